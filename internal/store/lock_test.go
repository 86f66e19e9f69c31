package store

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// A second Open of a folder in use names the holder's PID, not the
// EAGAIN of Pebble's fcntl lock. flock is per open file description, so
// two opens in one process conflict as two servers would.
func TestSecondOpenNamesLockHolder(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{CacheSize: 1 << 20, MemTableSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(dir, Options{CacheSize: 1 << 20, MemTableSize: 1 << 20})
	var locked *LockedError
	if !errors.As(err, &locked) || locked.PID != os.Getpid() || locked.Dir != dir {
		t.Fatalf("second open: %v, want a LockedError naming pid %d", err, os.Getpid())
	}
	want := "data folder " + dir + " is in use: another chatd (pid " + strconv.Itoa(os.Getpid()) + ") holds its lock"
	if err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// Closing releases both locks: the folder opens again.
	db, err = Open(dir, Options{CacheSize: 1 << 20, MemTableSize: 1 << 20})
	if err != nil {
		t.Fatalf("reopen after close: %v", err)
	}
	db.Close()
}

func TestPIDLockUnknownPID(t *testing.T) {
	dir := t.TempDir()
	l, err := lockPID(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.f.Truncate(0) // as between the holder's flock and its write
	_, err = lockPID(dir)
	var locked *LockedError
	if !errors.As(err, &locked) || locked.PID != 0 || err.Error() != "data folder "+dir+" is in use: another chatd holds its lock" {
		t.Fatalf("got %v", err)
	}
}

// A second server's disk watcher refuses a folder in use before it
// touches the ballast, which belongs to the running server.
func TestSpaceRefusesAFolderInUse(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	sp, err := OpenSpace(dir, SpaceOptions{Ballast: 1 << 20})
	var locked *LockedError
	if !errors.As(err, &locked) {
		if sp != nil {
			sp.Close()
		}
		t.Fatalf("OpenSpace on a folder in use: %v, want LockedError", err)
	}
	if _, err := os.Stat(filepath.Join(dir, BallastName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the refused watcher made a ballast: %v", err)
	}
}
