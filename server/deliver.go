package server

import (
	"errors"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/conn"
	"github.com/chatd/chatd/offline"
	"go.uber.org/zap"
)

// Delivery keeps one rule: a connection receives its inbox in seq order,
// with at most Window entries and WindowBytes bytes of frames
// unacknowledged (the byte bound keeps a window of large messages below
// the outbound limit, past which the client would be closed as a slow
// consumer; an empty window always takes one entry, so any entry gets
// through). Two paths feed it:
//
//   - live: the inbox lane that applied a new entry pushes it at once, but
//     only if the session is caught up (no backlog) and the window has room;
//   - drain: after login and after each ACK, entries waiting in the inbox
//     are read from Pebble and pushed, until the session is caught up.
//
// A lane that finds the session behind records the entry's seq in
// lastStored and leaves it to the drain. The drain declares the session
// caught up only when it read past every seq a lane recorded, under the
// same lock (dmu) the lanes take after applying. So an entry is either
// pushed by its lane or seen by a drain: none is skipped, none is pushed
// twice (both check seq > pushed), and order holds across the offline to
// online switch.

// hooks receives the inbox's callbacks.
type hooks struct{ s *Server }

// Applied pushes new entries to recipients that are online and caught up.
func (h hooks) Applied(ops []*offline.Op) {
	s := h.s
	b := s.batch()
	for _, op := range ops {
		c, ok := s.sessions.Lookup(op.To)
		if !ok {
			continue
		}
		st := &c.State
		st.dmu.Lock()
		if op.Seq > st.lastStored {
			st.lastStored = op.Seq
		}
		if op.Seq > st.pushed && !s.inbox.Expiring(op.To, op.Time) { // an expired entry is never pushed: its expiry settles it
			if st.backlog || !s.push(c, b, op) {
				s.setBacklog(st, true)
			}
		}
		st.dmu.Unlock()
	}
	s.flush(b)
}

// Durable answers SENT (or ERROR) to the senders of durable messages.
func (h hooks) Durable(ops []*offline.Op) {
	s := h.s
	s.counters.stored.Add(uint64(len(ops)))
	b := s.batch()
	for _, op := range ops {
		c, ok := op.Ctx.(*Conn)
		if !ok || op.Kind != offline.KindMessage {
			continue
		}
		buf, ok := c.Begin()
		if !ok {
			continue // the sender left; it resends with DUP and gets SENT then
		}
		switch {
		case errors.Is(op.Err, offline.ErrInboxFull):
			buf = codec.AppendError(buf, codec.CodeInboxFull, 0, &op.ID, "the recipient's inbox is full; not stored")
		case errors.Is(op.Err, offline.ErrDuplicateID):
			buf = codec.AppendError(buf, codec.CodeDuplicateID, 0, &op.ID, "this id was already used for another recipient or body")
		case errors.Is(op.Err, offline.ErrUnknownOutcome):
			// Applied, maybe pushed, maybe durable: only a resend with DUP
			// can tell the sender which.
			buf = codec.AppendError(buf, codec.CodeUnknownOutcome, 0, &op.ID, "outcome unknown: resend with DUP")
		case op.Err != nil:
			buf = codec.AppendError(buf, codec.CodeInternal, 0, &op.ID, "not stored")
		default:
			buf = (&codec.Sent{ID: op.ID, Time: op.Time}).Append(buf)
			s.counters.sent.Add(1)
		}
		if c.End(buf) {
			b.Add(c)
		}
	}
	s.flush(b)
}

// setBacklog records whether st has entries waiting to be pushed, keeping
// the drain-lag gauge. st.dmu must be held.
func (s *Server) setBacklog(st *session, on bool) {
	if st.backlog == on {
		return
	}
	st.backlog = on
	if on {
		s.counters.backlogged.Add(1)
	} else {
		s.counters.backlogged.Add(-1)
	}
}

// fits reports whether an entry whose frame is size bytes may join st's
// window now. An empty window takes any entry. st.dmu must be held.
func (s *Server) fits(st *session, size int) bool {
	n := st.inflightLen()
	return n == 0 || (n < s.cfg.Window && st.inflightBytes()+size <= s.cfg.WindowBytes)
}

// push queues op's new entry on c if the window has room for it and
// reports whether it did. st.dmu must be held.
func (s *Server) push(c *Conn, b *conn.Batch[session], op *offline.Op) bool {
	st := &c.State
	if st.inflightLen() >= s.cfg.Window {
		return false
	}
	buf, ok := c.Begin()
	if !ok {
		return true // closed: nothing to push to, nothing to hold back
	}
	n := len(buf)
	buf = op.AppendFrame(buf)
	if !s.fits(st, len(buf)-n) {
		c.End(buf[:n]) // the window is full of bytes: the drain sends it after an ACK
		return false
	}
	s.pushedLocked(c, b, op.Acked(), buf, len(buf)-n)
	return true
}

// pushedLocked finishes queueing inbox entry e on c: buf is c's queue
// from Begin with the entry's frame (size bytes) appended. st.dmu must be
// held.
func (s *Server) pushedLocked(c *Conn, b *conn.Batch[session], e offline.Acked, buf []byte, size int) {
	st := &c.State
	if c.End(buf) {
		b.Add(c)
	}
	if st.inflight == nil {
		st.inflight = s.windows.get()
	}
	st.inflight.push(e, size)
	st.pushed = e.Seq
	s.counters.pushed.Add(1)
	for n := int64(st.inflight.bytes); ; {
		peak := s.counters.inflightPeak.Load()
		if n <= peak || s.counters.inflightPeak.CompareAndSwap(peak, n) {
			break
		}
	}
}

// drain pushes inbox entries that wait for c, window permitting.
func (s *Server) drain(c *Conn) {
	st := &c.State
	user := st.user.Load()
	b := s.batch()
	defer s.flush(b)
	var frames []byte
	var ents []offline.Acked
	var ends []int // where each entry's frame ends in frames
	for {
		st.dmu.Lock()
		room := s.cfg.Window - st.inflightLen()
		byteRoom := s.cfg.WindowBytes - st.inflightBytes()
		empty := st.inflightLen() == 0
		from, stored := st.pushed, st.lastStored
		if !st.backlog || room <= 0 || byteRoom <= 0 && !empty || st.gone.Load() {
			st.dmu.Unlock()
			return
		}
		st.dmu.Unlock()

		// Read what fits in the window's entries and bytes; full says the
		// bytes ran out before the inbox did.
		frames, ents, ends = frames[:0], ents[:0], ends[:0]
		full := false
		err := s.inbox.Read(user, from, room, func(e *offline.Entry) bool {
			n := len(frames)
			frames = e.AppendFrame(frames)
			if len(frames) > byteRoom && !(empty && n == 0) {
				frames, full = frames[:n], true
				return false
			}
			ents = append(ents, e.Acked())
			ends = append(ends, len(frames))
			return true
		})
		if err != nil {
			s.log.Error("drain: read inbox", zap.Uint64("user", user), zap.Error(err))
			return
		}

		st.dmu.Lock()
		start := 0
		for i, e := range ents {
			size := ends[i] - start
			if e.Seq > st.pushed {
				if !s.fits(st, size) {
					full = true
					break
				}
				buf, ok := c.Begin()
				if !ok {
					// Closing: nothing more can be pushed, and reading on
					// would spin (pushed no longer moves) until Closed
					// runs, which waits for this turn to end.
					st.dmu.Unlock()
					return
				}
				s.pushedLocked(c, b, e, append(buf, frames[start:ends[i]]...), size)
			}
			start = ends[i]
		}
		// Fewer than asked means the read reached the end of the inbox as
		// it was when the read began. Every entry a lane recorded before
		// that (lastStored as read above) was applied before it: read now,
		// or gone (expired). A lane that recorded a later entry since then
		// changed lastStored, and the loop reads again. A window full of
		// bytes waits for an ACK, which drains again.
		if full {
			st.dmu.Unlock()
			return
		}
		caughtUp := len(ents) < room && (st.lastStored <= st.pushed || st.lastStored == stored)
		if caughtUp {
			s.setBacklog(st, false)
		}
		st.dmu.Unlock()
		if caughtUp {
			return
		}
	}
}

// ack handles ACK: entries up to seq leave the window and the inbox.
func (s *Server) ack(c *Conn, body []byte) error {
	var f codec.Ack
	if err := f.Decode(body); err != nil {
		return s.malformed(c, err)
	}
	st := &c.State
	st.dmu.Lock()
	if f.Seq > st.pushed {
		st.dmu.Unlock()
		s.errorTo(c, codec.CodeBadAck, 0, nil, "ACK beyond the last delivered seq")
		return nil
	}
	if f.Seq <= st.acked {
		st.dmu.Unlock()
		return nil
	}
	st.acked = f.Seq
	var acked []offline.Acked
	if st.inflight != nil {
		acked = st.inflight.popThrough(f.Seq, nil)
		if st.inflight.len() == 0 {
			s.windows.put(st.inflight)
			st.inflight = nil
		}
	}
	backlog := st.backlog
	st.dmu.Unlock()
	if err := s.inbox.AckEntries(st.user.Load(), acked); err != nil {
		s.log.Debug("ack not recorded", zap.Error(err))
	}
	if backlog {
		s.drain(c)
	}
	return nil
}
