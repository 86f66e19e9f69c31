package conn

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// FileLimit returns the process's open-files limit (soft and hard). Go
// raises the soft limit to the hard one at start-up, so soft is what the
// server can really use.
func FileLimit() (soft, hard uint64, err error) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 0, 0, fmt.Errorf("conn: getrlimit: %w", err)
	}
	return uint64(rl.Cur), uint64(rl.Max), nil
}
