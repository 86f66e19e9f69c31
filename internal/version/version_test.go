package version

import (
	"runtime"
	"strings"
	"testing"
)

func TestGetNamesTheGoRelease(t *testing.T) {
	in := Get()
	if in.Go != runtime.Version() || in.Version == "" || in.Commit == "" {
		t.Fatalf("%+v", in)
	}
	if s := in.String(); !strings.HasPrefix(s, "chatd ") || !strings.HasSuffix(s, runtime.Version()) {
		t.Fatalf("String() = %q", s)
	}
}
