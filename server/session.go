package server

import (
	"sync"
	"sync/atomic"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/conn"
	"github.com/chatd/chatd/offline"
)

// Conn is a client connection carrying a session.
type Conn = conn.Conn[session]

// session is the per-connection protocol state, stored inline in the
// connection. It stays small because a million idle sessions pay for
// every field: no maps, timers or goroutines, and the delivery window's
// ring is borrowed only while deliveries are unacknowledged. Fields are
// grouped by who owns them, and ordered within a group so that no padding
// is wasted (TestSessionStaysSmall).
type session struct {
	// Atomics, read anywhere without a lock. The event loop moves auth
	// from authNone to authPending (one attempt at a time); whoever
	// finishes the attempt (a registration goroutine, or the loop itself
	// for RESUME) sets user and then authDone, or goes back to authNone.
	// Closed sets gone; an authentication that finishes after it sees gone
	// and takes back its router entry.
	auth atomic.Uint32 // authNone, authPending, authDone
	gone atomic.Bool   // the connection closed
	user atomic.Uint64 // set once, before auth becomes authDone

	// Guarded by dmu (lock order: dmu, then Conn's queue): the delivery
	// state, written by the event loop (ACK, drain), inbox lanes (Applied)
	// and Closed alike.
	dmu        sync.Mutex
	token      codec.Token // the session's token, revoked by LOGOUT
	backlog    bool        // the inbox may hold entries not yet pushed
	pushed     uint64      // highest seq pushed on this connection
	acked      uint64      // highest seq the client acknowledged
	lastStored uint64      // highest seq applied to the inbox while online
	inflight   *window     // seqs pushed and not acknowledged; nil when none
	subs       []uint64    // users whose presence this connection watches
}

const (
	authNone uint32 = iota
	authPending
	authDone
)

// window holds the entries pushed and not yet acknowledged, in seq order,
// with what an ACK needs to delete them and send delivered receipts, so
// that acknowledging never reads the inbox back, and the size of each
// entry's frame, so that the unacknowledged bytes stay below the outbound
// limit. It grows from 16 entries as needed (up to the configured window)
// and is borrowed from a pool only while deliveries are in flight.
type window struct {
	ents  []offline.Acked
	sizes []int32 // frame bytes of ents[i]
	head  int
	bytes int // sum of sizes[head:]
}

func (w *window) push(a offline.Acked, size int) {
	w.ents = append(w.ents, a)
	w.sizes = append(w.sizes, int32(size))
	w.bytes += size
}

func (w *window) len() int { return len(w.ents) - w.head }

// popThrough removes and returns (appended to dst) every entry with
// seq <= seq.
func (w *window) popThrough(seq uint64, dst []offline.Acked) []offline.Acked {
	i := w.head
	for i < len(w.ents) && w.ents[i].Seq <= seq {
		w.bytes -= int(w.sizes[i])
		i++
	}
	dst = append(dst, w.ents[w.head:i]...)
	w.head = i
	if w.head == len(w.ents) {
		w.ents, w.sizes, w.head = w.ents[:0], w.sizes[:0], 0
	}
	return dst
}

func (s *session) inflightLen() int {
	if s.inflight == nil {
		return 0
	}
	return s.inflight.len()
}

func (s *session) inflightBytes() int {
	if s.inflight == nil {
		return 0
	}
	return s.inflight.bytes
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
	return &window{ents: make([]offline.Acked, 0, 16), sizes: make([]int32, 0, 16)}
}

func (ws *windows) put(w *window) {
	w.ents, w.sizes, w.head, w.bytes = w.ents[:0], w.sizes[:0], 0, 0
	if cap(w.ents) <= ws.size {
		ws.pool.Put(w)
	}
}
