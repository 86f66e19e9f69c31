package server

import (
	"sync"
	"sync/atomic"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/conn"
)

// Conn is a client connection carrying a session.
type Conn = conn.Conn[session]

// session is the per-connection protocol state, stored inline in the
// connection. It stays small because a million idle sessions pay for
// every field: no maps, timers or goroutines, and the delivery window's
// ring is borrowed only while deliveries are unacknowledged.
type session struct {
	auth atomic.Uint32 // authNone, authPending, authDone
	user atomic.Uint64 // set before auth becomes authDone
	gone atomic.Bool   // the connection closed
	// Guarded by dmu (lock order: dmu, then Conn's queue).
	dmu        sync.Mutex
	token      codec.Token // the session's token, revoked by LOGOUT
	pushed     uint64      // highest seq pushed on this connection
	acked      uint64      // highest seq the client acknowledged
	lastStored uint64      // highest seq applied to the inbox while online
	backlog    bool        // the inbox may hold entries not yet pushed
	inflight   *window     // seqs pushed and not acknowledged; nil when none
}

const (
	authNone uint32 = iota
	authPending
	authDone
)

// window is a ring of pushed, unacknowledged seqs, in increasing order.
type window struct {
	seqs       []uint64
	head, size int
}

func (w *window) push(seq uint64) {
	w.seqs[(w.head+w.size)%len(w.seqs)] = seq
	w.size++
}

// popThrough drops every seq <= seq.
func (w *window) popThrough(seq uint64) {
	for w.size > 0 && w.seqs[w.head] <= seq {
		w.head = (w.head + 1) % len(w.seqs)
		w.size--
	}
}

func (s *session) inflightLen() int {
	if s.inflight == nil {
		return 0
	}
	return s.inflight.size
}

// windows lends rings to sessions with deliveries in flight.
type windows struct {
	size int
	pool sync.Pool
}

func (ws *windows) get() *window {
	if w, ok := ws.pool.Get().(*window); ok {
		return w
	}
	return &window{seqs: make([]uint64, ws.size)}
}

func (ws *windows) put(w *window) {
	w.head, w.size = 0, 0
	ws.pool.Put(w)
}
