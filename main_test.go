package main

import (
	"strings"
	"testing"

	"github.com/chatd/chatd/internal/version"
)

// runCapture runs a command line in-process and returns its exit status
// and what it printed.
func runCapture(args ...string) (code int, stdout, stderr string) {
	var out, errOut strings.Builder
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestVersionCommand(t *testing.T) {
	want := version.Get().String() + "\n"
	for _, arg := range []string{"version", "--version", "-version"} {
		code, out, errOut := runCapture(arg)
		if code != 0 || out != want || errOut != "" {
			t.Errorf("chatd %s: status %d, stdout %q, stderr %q; want 0, %q", arg, code, out, errOut, want)
		}
	}
	if _, out, _ := runCapture("help"); !strings.Contains(out, "chatd version") {
		t.Errorf("top-level usage does not list version:\n%s", out)
	}
}

func TestUnknownCommandIsOneLine(t *testing.T) {
	code, out, errOut := runCapture("frobnicate")
	if code != 2 || out != "" || strings.Count(errOut, "\n") != 2 || !strings.Contains(errOut, `"frobnicate"`) {
		t.Fatalf("status %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestTopLevelHelpListsBenchScenarios(t *testing.T) {
	_, out, _ := runCapture("help")
	for _, sc := range benchScenarios {
		if !strings.Contains(out, sc) {
			t.Errorf("top-level usage does not name bench scenario %q:\n%s", sc, out)
		}
	}
	if code, _, errOut := runCapture("bench", "-h"); code != 0 || !strings.Contains(errOut, "herd") {
		t.Errorf("chatd bench -h: status %d, output %q", code, errOut)
	}
}
