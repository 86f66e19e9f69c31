// Package golden freezes known-answer test vectors in testdata files.
//
// A test computes its vectors from a seeded RNG and hands them to Check,
// which compares them with the checked-in JSON file. Running the tests with
// -update rewrites the files instead; review the diff before committing it,
// since a changed vector means a changed wire format or KDF.
package golden

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata known-answer files instead of checking them")

// Check compares got, marshalled as indented JSON, with the file at path.
func Check(t testing.TB, path string, got any) {
	t.Helper()
	b, err := json.MarshalIndent(got, "", "  ")
	if err != nil {
		t.Fatalf("golden: marshal %s: %v", path, err)
	}
	b = append(b, '\n')
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatalf("golden: %v", err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatalf("golden: write %s: %v", path, err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden: read %s (run with -update to create it): %v", path, err)
	}
	if !bytes.Equal(b, want) {
		t.Fatalf("golden: %s differs from the computed vectors:\n got: %s\nwant: %s", path, b, want)
	}
}
