package server

import (
	"testing"
	"unsafe"
)

// TestSessionStaysSmall guards the per-connection budget: chatd's own
// state for an idle session must stay well under 300 bytes (netpoll's
// floor is about 3 KB beside it).
func TestSessionStaysSmall(t *testing.T) {
	var c Conn
	if n := unsafe.Sizeof(c); n > 256 {
		t.Fatalf("Conn[session] is %d bytes; the idle-connection budget is 256 (plus ~52 B in the router)", n)
	}
	t.Logf("Conn[session] = %d bytes, session = %d", unsafe.Sizeof(c), unsafe.Sizeof(c.State))
}
