package main

import (
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func settingsFlags() (*flag.FlagSet, *int, *time.Duration, *string) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(new(strings.Builder))
	n := fs.Int("max-outbound", 4<<20, "")
	d := fs.Duration("keepalive", 3*time.Minute, "")
	a := fs.String("addr", "127.0.0.1:7420", "")
	fs.String("config", "", "")
	return fs, n, d, a
}

func TestSettingsPrecedence(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "chatd.conf")
	os.WriteFile(cfg, []byte("# chatd\nmax-outbound = 1000000\nkeepalive = 90s  # shorter\naddr = \"0.0.0.0:7420\"\n"), 0o644)
	env := map[string]string{"CHATD_KEEPALIVE": "60s"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }

	fs, n, d, a := settingsFlags()
	from, err := parseSettings(fs, []string{"--config", cfg, "--addr", "127.0.0.1:9000"}, lookup)
	if err != nil {
		t.Fatal(err)
	}
	if *n != 1000000 || *d != 60*time.Second || *a != "127.0.0.1:9000" {
		t.Fatalf("file, env, flag precedence wrong: outbound=%d keepalive=%v addr=%s", *n, *d, *a)
	}
	for name, want := range map[string]string{
		"max-outbound": cfg + ":2", "keepalive": "environment CHATD_KEEPALIVE", "addr": "the command line",
	} {
		if got := from.of(name); !strings.HasSuffix(got, want) {
			t.Errorf("%s came from %q, want %q", name, got, want)
		}
	}
}

// A value that parses but that the server refuses names its flag and the
// place it came from, and main exits 2 for it as for a bad flag.
func TestRefusedSettingNamesFlagAndSource(t *testing.T) {
	t.Setenv("CHATD_MEMORY_WATERMARK", "1.5")
	var stderr strings.Builder
	code := run([]string{"serve", "--data", t.TempDir(), "--addr", "127.0.0.1:0", "--admin", "", "--max-body", "70000"}, io.Discard, &stderr)
	if code != 2 {
		t.Fatalf("exit %d, want 2; stderr %q", code, stderr.String())
	}
	for _, want := range []string{
		"-memory-watermark 1.5 (from environment CHATD_MEMORY_WATERMARK): outside (0, 1]",
		"-max-body 70000 (from the command line): outside 1..",
	} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr %q lacks %q", stderr.String(), want)
		}
	}
}

// A command line that does not parse exits 2, as flag.ExitOnError would,
// whichever command it is; a command that ran and failed exits 1.
func TestBadFlagExitsTwo(t *testing.T) {
	for _, args := range [][]string{
		{"serve", "--no-such-flag"}, {"chat", "--no-such-flag"}, {"chat", "stray"},
		{"backup"}, {"restore"}, {"bench", "route", "--no-such-flag"}, {"sysctl", "print", "--no-such-flag"},
	} {
		var stderr strings.Builder
		if code := run(args, io.Discard, &stderr); code != 2 {
			t.Errorf("%q: exit %d, want 2; stderr %q", args, code, stderr.String())
		}
	}
}

func TestBadSettingsStopStartup(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.conf")
	os.WriteFile(bad, []byte("keepalive = soon\n"), 0o644)
	unknown := filepath.Join(dir, "unknown.conf")
	os.WriteFile(unknown, []byte("keep-alive = 3m\n"), 0o644)
	none := func(string) (string, bool) { return "", false }
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--config", bad}, nil, `bad.conf:1: keepalive = "soon"`},
		{[]string{"--config", unknown}, nil, `unknown setting "keep-alive"`},
		{nil, map[string]string{"CHATD_MAX_OUTBOUND": "lots"}, `CHATD_MAX_OUTBOUND="lots"`},
		{[]string{"--keepalive", "forever"}, nil, `invalid value "forever"`},
		{[]string{"--config", filepath.Join(dir, "missing.conf")}, nil, "missing.conf"},
	} {
		fs, _, _, _ := settingsFlags()
		lookup := none
		if tc.env != nil {
			lookup = func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }
		}
		_, err := parseSettings(fs, tc.args, lookup)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: error %v, want one mentioning %q", tc.args, tc.env, err, tc.want)
		}
	}
}

// A bad flag comes back as its error and one line of hint; the usage is
// printed only for -h.
func TestBadFlagIsOneHintNotUsage(t *testing.T) {
	none := func(string) (string, bool) { return "", false }
	fs, _, _, _ := settingsFlags()
	var out strings.Builder
	fs.SetOutput(&out)
	fs.Usage = func() { out.WriteString("USAGE\n") }
	_, err := parseSettings(fs, []string{"--keepalive", "forever"}, none)
	if err == nil || out.Len() != 0 {
		t.Fatalf("error %v, printed %q", err, out.String())
	}
	if lines := strings.Split(err.Error(), "\n"); len(lines) != 2 || lines[1] != `Run "chatd serve -h" for the flags` {
		t.Fatalf("error %q, want the parse error and one hint line", err)
	}
	if _, err := parseSettings(fs, []string{"-h"}, none); !errors.Is(err, flag.ErrHelp) || out.String() != "USAGE\n" {
		t.Fatalf("-h: error %v, printed %q", err, out.String())
	}
}
