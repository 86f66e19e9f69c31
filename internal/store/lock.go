package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Pebble's LOCK file (an flock) keeps a second process off a data
// folder, but its error is a bare "resource temporarily unavailable".
// The holder also writes its PID beside it, so that the refused one can
// say who holds the folder. The PID file is only ever read while the lock
// is held by someone, so one left by a killed server is never believed:
// the next holder overwrites it.

// pidFile is the holder's PID, beside Pebble's LOCK.
const pidFile = "chatd.pid"

// ErrInUse is Open's error when another process holds the data folder.
var ErrInUse = errors.New("store: the data folder is in use")

// inUse turns Pebble's lock error into one that names the holder.
func inUse(dir string, err error) error {
	// Pebble refuses a second lock from its own process before flock
	// would, with an unexported error: matched by its text.
	if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EAGAIN) &&
		!strings.Contains(err.Error(), "lock held by current process") {
		return nil
	}
	holder := "another process"
	if b, rerr := os.ReadFile(filepath.Join(dir, pidFile)); rerr == nil {
		if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil && pid > 0 {
			holder = fmt.Sprintf("another chatd (pid %d)", pid)
		}
	}
	return fmt.Errorf("%w: %s holds %s: stop it first, or give this server another data folder", ErrInUse, holder, dir)
}

// writePID records this process as the folder's holder (best effort: the
// lock, not this file, is what keeps others out).
func writePID(dir string) {
	_ = os.WriteFile(filepath.Join(dir, pidFile), []byte(strconv.Itoa(os.Getpid())+"\n"), fileMode)
}
