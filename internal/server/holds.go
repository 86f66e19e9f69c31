package server

import (
	"sync"

	"github.com/chatd/chatd/codec"
)

// maxHolds bounds the recipients one connection may have held at once
// (holds): beyond it the connection is closed after the refusal, and the
// client resends everything without SENT, in order, on a new one.
const maxHolds = 64

// holdKey names a recipient: a user, or a group (flag GROUP), whose ids
// may be equal.
type holdKey struct {
	to    uint64
	group bool
}

// hold is the first SEND to a recipient this connection had refused for
// now (27, 28: retry later).
type hold struct {
	id   codec.MsgID
	code codec.Code
}

// holds keeps per-sender order across retries. The client keeps up to a
// window of SENDs unanswered, so messages written behind a refused one
// reach the server before its resend; taken, they would overtake it. So
// once a SEND to a recipient is refused for now, every later SEND on that
// connection to that recipient is refused with the same code, storing
// nothing, until the refused id comes again. Connections that never had a
// refusal pay one atomic load per SEND (session.held): the map is
// server-wide and only holds connections with a refusal outstanding.
type holds struct {
	mu sync.Mutex
	m  map[*Conn]map[holdKey]hold
}

// check reports the hold that refuses a SEND of id to k on c. The held
// id itself lifts the hold (it may be refused again, and held anew).
// Only c's event loop calls it.
func (h *holds) check(c *Conn, k holdKey, id codec.MsgID) (hold, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	byKey := h.m[c]
	held, ok := byKey[k]
	if !ok {
		return hold{}, false
	}
	if held.id != id {
		return held, true
	}
	delete(byKey, k)
	if len(byKey) == 0 {
		delete(h.m, c)
	}
	c.State.held.Add(^uint32(0))
	return hold{}, false
}

// add holds k on c behind id, refused with code. It reports false when c
// already holds maxHolds recipients (nothing is held then). Only c's
// event loop calls it; Closed may run meanwhile, hence the gone check.
func (h *holds) add(c *Conn, k holdKey, id codec.MsgID, code codec.Code) bool {
	h.mu.Lock()
	byKey := h.m[c]
	if _, ok := byKey[k]; ok { // already held (an earlier id): that one goes first
		h.mu.Unlock()
		return true
	}
	if len(byKey) >= maxHolds {
		h.mu.Unlock()
		return false
	}
	if byKey == nil {
		if h.m == nil {
			h.m = map[*Conn]map[holdKey]hold{}
		}
		byKey = map[holdKey]hold{}
		h.m[c] = byKey
	}
	byKey[k] = hold{id: id, code: code}
	c.State.held.Add(1)
	h.mu.Unlock()
	if c.State.gone.Load() {
		h.forget(c) // Closed ran before the hold was added
	}
	return true
}

// forget drops c's holds (the connection closed).
func (h *holds) forget(c *Conn) {
	h.mu.Lock()
	delete(h.m, c)
	h.mu.Unlock()
}

// len reports how many connections hold a recipient (for /metrics).
func (h *holds) len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.m)
}

// refuseForNow answers a SEND refused for now (27, 28) and holds its
// recipient on c behind it. It reports false when c holds too many
// recipients: the caller closes the connection.
func (s *Server) refuseForNow(c *Conn, f *codec.Send, code codec.Code, detail string) bool {
	s.errorTo(c, code, 0, &f.ID, detail)
	return s.holds.add(c, holdKey{f.To, f.Flags&codec.FlagGroup != 0}, f.ID, code)
}

// heldBack refuses f if an earlier SEND on c to the same recipient was
// refused for now and not sent again yet.
func (s *Server) heldBack(c *Conn, f *codec.Send) bool {
	if c.State.held.Load() == 0 {
		return false
	}
	h, ok := s.holds.check(c, holdKey{f.To, f.Flags&codec.FlagGroup != 0}, f.ID)
	if !ok {
		return false
	}
	s.counters.held.Add(1)
	s.errorTo(c, h.code, 0, &f.ID, "an earlier message to this recipient was refused for now: resend it first, then this one")
	return true
}
