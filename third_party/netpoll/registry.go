// The server's connections by fd (PATCHES.md 7): not upstream's.

//go:build !windows

package netpoll

import "sync"

// registry holds a server's open connections, indexed by fd, for Close
// to find the idle ones. A slice slot is 8 bytes per fd; the sync.Map it
// replaces cost a trie entry and a share of its index nodes per
// connection (about 200 bytes at 15,000 connections).
type registry struct {
	mu   sync.Mutex
	byFD []*connection
}

// store records c under its fd.
func (r *registry) store(fd int, c *connection) {
	r.mu.Lock()
	if fd >= len(r.byFD) {
		r.byFD = append(r.byFD, make([]*connection, fd+1-len(r.byFD))...)
	}
	r.byFD[fd] = c
	r.mu.Unlock()
}

// remove forgets c. Only c itself: its fd may already have been closed
// and given to a connection accepted since, whose slot stays.
func (r *registry) remove(fd int, c *connection) {
	r.mu.Lock()
	if fd < len(r.byFD) && r.byFD[fd] == c {
		r.byFD[fd] = nil
	}
	r.mu.Unlock()
}

// snapshot returns the connections open now. The lock is not held while
// the caller closes them: a close runs remove.
func (r *registry) snapshot() []*connection {
	r.mu.Lock()
	defer r.mu.Unlock()
	var open []*connection
	for _, c := range r.byFD {
		if c != nil {
			open = append(open, c)
		}
	}
	return open
}
