package store

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"
)

// The data folder holds password hashes, session token digests and queued
// message bodies (readable in the WAL until compacted away), so only the
// server's own user may read it: the folder is 0700 and every file 0600.
//
// `chatd serve` sets its umask to 0077 at start-up, which covers everything
// the process creates. Open does not rely on that alone, since the store is
// also opened by tests and other programs: it creates the folder 0700,
// tightens an existing looser folder and its files (with a log line, as an
// operator upgrading should know), and hands Pebble a file system that
// creates its files 0600 whatever the umask.
const (
	dirMode  fs.FileMode = 0o700
	fileMode fs.FileMode = 0o600
)

// preparePrivateDir creates dir 0700, or tightens an existing dir and the
// files directly in it (Pebble keeps no subfolders) to 0700 and 0600.
func preparePrivateDir(dir string, log *zap.Logger) error {
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return fmt.Errorf("store: create %s: %w", dir, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if fi.Mode().Perm()&^dirMode != 0 {
		log.Warn("data folder was readable by other users; making it private",
			zap.String("dir", dir), zap.Stringer("was", fi.Mode().Perm()), zap.Stringer("now", dirMode))
		if err := os.Chmod(dir, dirMode); err != nil {
			return fmt.Errorf("store: make %s private: %w", dir, err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	tightened := 0
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		if info.Mode().Perm()&^fileMode != 0 {
			if err := os.Chmod(filepath.Join(dir, e.Name()), info.Mode().Perm()&fileMode); err != nil {
				return fmt.Errorf("store: make %s private: %w", e.Name(), err)
			}
			tightened++
		}
	}
	if tightened > 0 {
		log.Warn("data files were readable by other users; made them private",
			zap.String("dir", dir), zap.Int("files", tightened))
	}
	return nil
}

// privateFS is Pebble's default file system, except that the files and
// folders it creates are private to this user even under a loose umask.
// The mode is set on the open descriptor before Pebble writes a byte.
type privateFS struct{ vfs.FS }

func (p privateFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	return private(p.FS.Create(name, c))
}

func (p privateFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	return private(p.FS.OpenReadWrite(name, c, opts...))
}

func (p privateFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	return private(p.FS.ReuseForWrite(oldname, newname, c))
}

func (p privateFS) MkdirAll(dir string, _ os.FileMode) error {
	return p.FS.MkdirAll(dir, dirMode)
}

// Lock creates the LOCK file (empty, but still the folder's business).
func (p privateFS) Lock(name string) (io.Closer, error) {
	c, err := p.FS.Lock(name)
	if err == nil {
		if err = os.Chmod(name, fileMode); err != nil {
			c.Close()
			return nil, fmt.Errorf("store: make %s private: %w", name, err)
		}
	}
	return c, err
}

func (p privateFS) Unwrap() vfs.FS { return p.FS }

func private(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return f, err
	}
	fd := f.Fd()
	if fd == vfs.InvalidFd {
		return f, nil // not an OS file; nothing on disk to protect
	}
	if err := syscall.Fchmod(int(fd), uint32(fileMode)); err != nil {
		f.Close()
		return nil, fmt.Errorf("store: make file private: %w", err)
	}
	return f, nil
}
