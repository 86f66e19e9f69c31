package server

import (
	"errors"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/offline"
	"github.com/chatd/chatd/internal/router"
)

// hooks receives the inbox's callbacks.
type hooks struct{ s *Server }

// Applied pushes new entries to recipients that are online and caught up:
// the router decides, for each, whether it is pushed now or drained later.
func (h hooks) Applied(entries []*offline.Stored) {
	b := h.s.batch()
	h.s.sessions.Applied(entries, b)
	h.s.flush(b)
	if h.s.rm != nil {
		h.s.pushAway(entries) // sessions on other nodes
	}
	if h.s.pushes != nil {
		h.s.duePushes(entries) // Web Push to users with no session anywhere
	}
}

// Durable answers SENT (or ERROR) to the senders of durable messages.
func (h hooks) Durable(msgs []*offline.Message[*Conn], others []offline.Done) {
	h.s.counters.stored.Add(uint64(len(msgs) + len(others)))
	h.s.answer(msgs)
}

// LiveAcked answers SENT to the senders of messages their recipients
// acknowledged before they were stored (offline's live.go), as Durable
// does for stored ones.
func (h hooks) LiveAcked(msgs []*offline.Message[*Conn]) { h.s.answer(msgs) }

// answer queues SENT, or the ERROR m.Err calls for, on each message's
// sender, and flushes them. A message acknowledged live whose sender asked
// for it (OPTIONS) is answered SENT_DELIVERED: its receipt was not made.
func (s *Server) answer(msgs []*offline.Message[*Conn]) {
	b := s.batch()
	var sent, folded uint64
	now := mono() // one clock read per batch, for the SEND-to-SENT histogram
	for _, m := range msgs {
		c := m.Sender
		if c == nil {
			s.storeDone(m) // another node's SEND, or a group message
			continue
		}
		buf, ok := c.Begin()
		if !ok {
			continue // the sender left; it resends with DUP and gets SENT then (a live copy: again)
		}
		switch {
		case m.Err == nil: // the common case first
			if m.FoldReceipt && m.Delivered != 0 { // acknowledged live (ackLive): no RECEIPT was made
				buf = (&codec.SentDelivered{ID: m.ID, Time: m.Time, Delivered: m.Delivered}).Append(buf)
				folded++
			} else {
				buf = (&codec.Sent{ID: m.ID, Time: m.Time}).Append(buf)
			}
			sent++
			if m.Stamp != 0 {
				s.lat.sendSent.Observe(time.Duration(now - m.Stamp))
			}
		case errors.Is(m.Err, offline.ErrInboxFull):
			buf = codec.AppendError(buf, codec.CodeInboxFull, 0, &m.ID, "the recipient's inbox is full; not stored")
		case errors.Is(m.Err, offline.ErrInboxBytesFull):
			buf = codec.AppendError(buf, codec.CodeInboxBytesFull, 0, &m.ID, "the recipient's inbox is at its byte quota; not stored")
		case errors.Is(m.Err, offline.ErrDuplicateID):
			buf = codec.AppendError(buf, codec.CodeDuplicateID, 0, &m.ID, "this id was already used for another recipient or body")
		case errors.Is(m.Err, offline.ErrUnknownOutcome):
			// Applied, maybe pushed, maybe durable: only a resend with DUP
			// can tell the sender which.
			buf = codec.AppendError(buf, codec.CodeUnknownOutcome, 0, &m.ID, "outcome unknown: resend with DUP")
		default:
			buf = codec.AppendError(buf, codec.CodeInternal, 0, &m.ID, "not stored")
		}
		if c.End(buf) {
			b.Add(c)
		}
	}
	s.counters.sent.Add(sent) // once per batch, not per message
	if folded != 0 {
		s.counters.sentDelivered.Add(folded)
	}
	s.flush(b)
}

// deliverLive pushes m to its recipient before storing it, if the
// recipient is online here with room for it (offline.Inbox.Deliver), and
// reports whether it did. The recipient's connection is flushed when the
// sender's turn ends, once for all the SENDs the turn read.
func (s *Server) deliverLive(m *offline.Message[*Conn]) bool {
	rc, ok := s.sessions.Lookup(m.To)
	if !ok {
		return false // not online here: no seq to spend, no lock to take
	}
	return s.inbox.Deliver(m, func(e *offline.Stored) bool { return s.sessions.PushLiveTo(rc, e, afterTurn{m.Sender}) })
}

// afterTurn is a router.Batch that flushes when the turn of c ends
// (conn.Conn.FlushAfterTurn); only c's own turn may use it.
type afterTurn struct{ c *Conn }

func (a afterTurn) Add(o *Conn) { a.c.FlushAfterTurn(o) }

// drain sends c what waits in its inbox, window permitting.
func (s *Server) drain(c *Conn) {
	b := s.batch()
	s.sessions.Drain(c, b)
	s.flush(b)
}

// ack handles ACK: entries up to seq leave the window and the inbox, and
// what waited for the room is drained.
func (s *Server) ack(c *Conn, body []byte) error {
	var f codec.Ack
	if err := f.Decode(body); err != nil {
		return s.malformed(c, err)
	}
	drain, err := s.sessions.Ack(c, f.Seq, afterTurn{c}) // what it pushes live (receipts) flushes with the turn
	if errors.Is(err, router.ErrAckBeyond) {
		s.errorTo(c, codec.CodeBadAck, 0, nil, "ACK beyond the last delivered seq")
		return nil
	}
	if drain {
		s.drain(c)
	}
	return nil
}
