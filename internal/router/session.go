package router

import (
	"sync"

	"github.com/chatd/chatd/internal/offline"
)

// Session is one connection's delivery state. It is stored inline in the
// connection's own state (a million idle sessions pay for every byte), and
// its ring of unacknowledged entries is borrowed only while deliveries are
// in flight.
//
// Its lock is also the lock of whatever per-connection state its owner
// keeps beside it (server: the token and presence subscriptions), so that
// a session costs one mutex: Lock and Unlock are for that state; the
// delivery fields below are the Router's alone. Lock order: Session, then
// the connection's queue.
type Session struct {
	mu         sync.Mutex
	backlog    bool    // the inbox may hold entries not yet pushed
	closed     bool    // Closed ran: nothing more is pushed or drained
	behinds    uint32  // Behind calls so far: a drain that read across one is not caught up
	pushed     uint64  // highest seq pushed on this connection
	acked      uint64  // highest seq the client acknowledged
	lastStored uint64  // highest seq applied to the inbox while online
	inflight   *window // entries pushed and not acknowledged; nil when none
}

// Lock locks the session for its owner's fields kept beside it.
func (s *Session) Lock() { s.mu.Lock() }

// Unlock unlocks what Lock locked.
func (s *Session) Unlock() { s.mu.Unlock() }

func (s *Session) inflightLen() int {
	if s.inflight == nil {
		return 0
	}
	return s.inflight.len()
}

func (s *Session) inflightBytes() int {
	if s.inflight == nil {
		return 0
	}
	return s.inflight.bytes
}

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
