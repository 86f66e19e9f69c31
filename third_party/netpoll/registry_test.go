// Tests for the connection registry (PATCHES.md 7): not upstream's.

//go:build !windows

package netpoll

import "testing"

// A close callback that runs after its fd went to a newer connection must
// not forget the newer one (sync.Map.Delete(fd) did).
func TestRegistryRemoveKeepsReusedFD(t *testing.T) {
	var r registry
	old, fresh := new(connection), new(connection)
	r.store(7, old)
	r.store(7, fresh) // fd 7 closed and accepted again before old's callback
	r.remove(7, old)
	if got := r.snapshot(); len(got) != 1 || got[0] != fresh {
		t.Fatalf("after the stale remove: %v, want only the newer connection", got)
	}
	r.remove(7, fresh)
	r.remove(100, fresh) // beyond the slice: nothing to do
	if got := r.snapshot(); len(got) != 0 {
		t.Fatalf("after removing both: %d connections, want 0", len(got))
	}
}
