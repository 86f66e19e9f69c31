package store

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cockroachdb/pebble/v2/vfs"
	"golang.org/x/sys/unix"
)

// pidFile sits beside Pebble's LOCK. Pebble's own lock is an fcntl lock
// whose failure reads "resource temporarily unavailable" and names no
// one; this flock, taken first, holds the owner's PID so a second server
// on the folder can say who is in the way.
const pidFile = "chatd.pid"

// LockedError is returned by Open when another chatd holds the data
// folder. PID is 0 if it could not be read.
type LockedError struct {
	Dir string
	PID int
}

func (e *LockedError) Error() string {
	who := "another chatd"
	if e.PID != 0 {
		who += " (pid " + strconv.Itoa(e.PID) + ")"
	}
	return fmt.Sprintf("data folder %s is in use: %s holds its lock", e.Dir, who)
}

// pidLockFS takes the PID lock around every Pebble directory lock, and
// releases it with Pebble's when the DB closes.
type pidLockFS struct{ vfs.FS }

func (p pidLockFS) Lock(name string) (io.Closer, error) {
	pl, err := lockPID(filepath.Dir(name))
	if err != nil {
		return nil, err
	}
	c, err := p.FS.Lock(name)
	if err != nil {
		pl.Close()
		return nil, err
	}
	return closers{c, pl}, nil
}

func (p pidLockFS) Unwrap() vfs.FS { return p.FS }

type closers []io.Closer

func (cs closers) Close() error {
	var errs []error
	for _, c := range cs {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// pidLock is a held flock on dir/chatd.pid. flock belongs to the open
// file description, so a second attempt conflicts even in one process.
type pidLock struct{ f *os.File }

func lockPID(dir string) (*pidLock, error) {
	f, err := os.OpenFile(filepath.Join(dir, pidFile), os.O_CREATE|os.O_RDWR, fileMode)
	if err != nil {
		return nil, fmt.Errorf("store: lock %s: %w", dir, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			// The holder writes its PID just after locking; a read in
			// between finds nothing, and the error says the PID is unknown.
			b, _ := io.ReadAll(f)
			pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
			return nil, &LockedError{Dir: dir, PID: pid}
		}
		return nil, fmt.Errorf("store: lock %s: %w", dir, err)
	}
	err = f.Truncate(0)
	if err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("store: write %s: %w", f.Name(), err)
	}
	return &pidLock{f}, nil
}

// Close empties the file so a PID is only ever read while its process
// holds the lock, then releases the lock. The file stays: removing it
// would race with the next server opening it.
func (l *pidLock) Close() error {
	l.f.Truncate(0)
	return l.f.Close()
}
