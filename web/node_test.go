package web

import (
	"os/exec"
	"path/filepath"
	"testing"
)

// TestNode runs the JS tests (node --test: the Noise and codec vectors
// from PROTOCOL.md) from `go test ./...`, so the repo's one test command
// covers them. They need only Node (vendor/noble.js is committed), no
// npm install; without node the test skips.
func TestNode(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not found: the JS tests (web/test/*.test.js) need Node 20+")
	}
	files, err := filepath.Glob("test/*.test.js")
	if err != nil || len(files) < 2 {
		t.Fatalf("found JS tests %v (%v)", files, err)
	}
	out, err := exec.Command(node, append([]string{"--test", "--test-reporter=dot"}, files...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("node --test: %v\n%s", err, out)
	}
	t.Logf("node --test %v: passed", files)
}
