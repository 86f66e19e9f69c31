package codec

import (
	"bytes"
	"os"
	"testing"

	"github.com/chatd/chatd/codec/internal/framegen"
)

// TestGeneratedCurrent fails when frames_gen.go is not what go generate
// makes of frames.txt: an edit to either that the other does not follow.
func TestGeneratedCurrent(t *testing.T) {
	want, err := framegen.File("frames.txt")
	if err != nil {
		t.Fatal(err)
	}
	if have, err := os.ReadFile("frames_gen.go"); err != nil || !bytes.Equal(have, want) {
		t.Fatalf("frames_gen.go is stale (%v): run go generate ./codec", err)
	}
}
