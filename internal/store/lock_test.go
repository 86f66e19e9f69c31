package store

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

// A second Open of a folder in use says who holds it (flock conflicts
// between two opens in one process as between two processes), and the
// folder opens again once the holder closes.
func TestSecondOpenNamesTheHolder(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(dir, Options{})
	want := fmt.Sprintf("another chatd (pid %d) holds %s", os.Getpid(), dir)
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), want) {
		db.Close()
		t.Fatalf("second open: %v; want ErrInUse naming %q", err, want)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = Open(dir, Options{})
	if err != nil {
		t.Fatalf("open after the holder closed: %v", err)
	}
	db.Close()
}
