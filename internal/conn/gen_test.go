package conn

import "testing"

// Each accepted connection gets its own Gen, so that a connection named
// by address and Gen is not taken for a later one at the same address.
func TestGenNamesEachConnection(t *testing.T) {
	s, h := startServer(t, Config{})
	seen := map[uint32]bool{}
	for i := range 3 {
		nc, _ := dial(t, s.Addr().String())
		g := h.conn(i).Gen()
		if g == 0 || seen[g] {
			t.Fatalf("connection %d has Gen %d; earlier ones %v", i, g, seen)
		}
		seen[g] = true
		nc.Close()
	}
}
