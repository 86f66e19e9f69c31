package store

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// checkPrivate fails unless dir is 0700 and every file under it 0600 or
// tighter: nothing in the data folder may be readable by another user.
func checkPrivate(t *testing.T, dir string) {
	t.Helper()
	files := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // an obsolete file the open store deleted meanwhile (an old OPTIONS)
		}
		if err != nil {
			return err
		}
		perm := info.Mode().Perm()
		switch {
		case d.IsDir() && perm != dirMode:
			t.Errorf("folder %s is %v, want %v", path, perm, dirMode)
		case !d.IsDir() && perm&^fileMode != 0:
			t.Errorf("file %s is %v, want %v", path, perm, fileMode)
		}
		if !d.IsDir() {
			files++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 3 {
		t.Fatalf("only %d files under %s: the check saw no WAL, MANIFEST or tables", files, dir)
	}
}

// writeAndFlush puts a record through the WAL (Sync) and into a table
// (Flush), so every kind of Pebble file exists.
func writeAndFlush(t *testing.T, db *pebble.DB) {
	t.Helper()
	if err := db.Set([]byte("i-queued-body"), []byte("a message body"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
}

// TestDataFolderPrivate opens a store under the usual umask 022 (the
// default on most hosts, and what the server ran with before): the folder
// must still come out 0700 and the WAL, MANIFEST, tables, OPTIONS and LOCK
// files 0600.
// It does so also with the free-space watch the server always uses, which
// wraps the file system Pebble writes through.
func TestDataFolderPrivate(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	for _, withSpace := range []bool{false, true} {
		dir := filepath.Join(t.TempDir(), "data")
		var o Options
		if withSpace {
			sp, err := OpenSpace(dir, SpaceOptions{Ballast: 1 << 20})
			if err != nil {
				t.Fatal(err)
			}
			defer sp.Close()
			o.Space = sp
		}
		db, err := Open(dir, o)
		if err != nil {
			t.Fatal(err)
		}
		writeAndFlush(t, db)
		checkPrivate(t, dir) // while open: the WAL holds the body now
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		checkPrivate(t, dir)
	}
}

// TestLooseDataFolderTightened: a folder left 0755 with 0644 files by an
// earlier version is made private on open, with a log line saying so.
func TestLooseDataFolderTightened(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "data")
	db, err := pebble.Open(dir, &pebble.Options{Logger: zapLogger{zap.NewNop().Sugar()}}) // Pebble's own modes: 0755 and 0644
	if err != nil {
		t.Fatal(err)
	}
	writeAndFlush(t, db)
	db.Close()
	if fi, _ := os.Stat(dir); fi.Mode().Perm() == dirMode {
		t.Fatalf("setup: pebble made the folder %v already", fi.Mode().Perm())
	}

	core, logs := observer.New(zap.WarnLevel)
	db, err = Open(dir, Options{Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	checkPrivate(t, dir)
	if logs.FilterMessageSnippet("readable by other users").Len() < 2 {
		t.Errorf("tightening was not logged: %v", logs.All())
	}
}
