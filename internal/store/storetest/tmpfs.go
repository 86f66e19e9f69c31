// Package storetest helps tests put a store on a small disk of its own, so
// that a full disk is something a test can reach.
package storetest

import (
	"strconv"
	"syscall"
	"testing"
)

// MountTmpfs mounts a tmpfs of size bytes on a fresh temporary folder and
// unmounts it when the test ends (after whatever used it, registered
// later, has closed). It skips the test where mounting is not allowed.
func MountTmpfs(t testing.TB, size int64) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+strconv.FormatInt(size, 10)); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root or CAP_SYS_ADMIN; CI runs as root): %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			// Something still holds it (a server that failed to close):
			// detach it anyway so that a failed run leaves no mount behind.
			t.Errorf("unmount %s: %v", dir, err)
			syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	return dir
}
