package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/history"
)

// storeEntry is the client's Store hook: each inbox entry is written to
// the local store before the client acknowledges it, so the server only
// deletes what this machine has kept.
func (s *session) storeEntry(f codec.Frame) error {
	switch f := f.(type) {
	case *codec.Deliver:
		if s.e2e != nil {
			return s.storeE2E(f)
		}
		return s.store.AddIncoming(f)
	case *codec.GroupEvent:
		if s.e2e != nil {
			return s.groupEventE2E(f)
		}
	case *codec.Receipt:
		var st history.State
		switch f.Kind {
		case codec.ReceiptDelivered:
			st = history.Delivered
		case codec.ReceiptRead:
			st = history.Read
		case codec.ReceiptExpired:
			st = history.Expired
		default:
			return nil
		}
		var moved []history.Message
		for i := 0; i < f.IDs.Len(); i++ {
			m, changed, err := s.store.Advance(f.IDs.At(i), st, time.Time{})
			if err != nil {
				return err
			}
			if changed || f.Group != 0 { // each member's receipt is news in a group
				moved = append(moved, m)
			}
		}
		s.mu.Lock()
		s.ticks[f.Seq] = moved
		s.mu.Unlock()
	}
	return nil
}

// events shows what the server sends until the client ends.
func (s *session) events() {
	for f := range s.cl.Events() {
		switch f := f.(type) {
		case *codec.Deliver:
			if s.e2e != nil {
				if _, ok := s.e2e.hidden.LoadAndDelete(f.ID); ok {
					continue // a sender key, not a message
				}
				s.sayNote(f)
			}
			s.deliver(f)
		case *codec.KeysLow:
			if s.e2e != nil {
				poke(s.e2e.refill)
			}
		case *codec.IdentityChanged:
			if s.e2e != nil {
				s.identityNotice(f)
			}
		case *codec.Sent:
			if s.e2e != nil && s.controlAnswered(f.ID, nil) {
				continue
			}
			// The client hands on one SENT per message, and a receipt
			// stored by the client's goroutine may already have moved the
			// message past Sent: the tick shows either way.
			if m, ok := s.answered(f.ID, history.Sent, f.Time); ok && !s.ticked(f.ID, true) {
				s.out.say("  ✓ %s", s.label(m, 0))
			}
		case *codec.SentDelivered:
			if s.e2e != nil && s.controlAnswered(f.ID, nil) {
				continue
			}
			s.sentDelivered(f)
		case *codec.Receipt:
			s.mu.Lock()
			moved := s.ticks[f.Seq]
			delete(s.ticks, f.Seq)
			s.mu.Unlock()
			s.receipt(f, moved)
		case *codec.Error:
			if f.ID != (codec.MsgID{}) && s.e2e != nil && s.controlAnswered(f.ID, f) {
				continue
			}
			if f.ID != (codec.MsgID{}) {
				if m, ok, _ := s.store.Message(f.ID); ok {
					s.store.Advance(f.ID, history.Failed, time.Time{})
					s.out.say("  ✗ not sent %s: %v", s.label(m, 0), explainSendError(f))
					continue
				}
			}
			s.out.say("! %v", f)
		case *codec.IsTyping:
			if f.State == codec.TypingStarted {
				s.out.say("  %s is typing…", s.name(f.From))
			}
		case *codec.Kicked:
			s.out.say("! session ended: %v", f.Reason)
		case *codec.Presence:
			switch f.State {
			case codec.PresenceOffline:
				seen := "never"
				if f.LastSeen != 0 {
					seen = time.UnixMilli(int64(f.LastSeen)).Format("Jan 2 15:04")
				}
				s.out.say("  %s is offline (last seen %s)", s.name(f.User), seen)
			default:
				s.out.say("  %s is %v", s.name(f.User), f.State)
			}
		case *codec.GroupEvent:
			s.out.say("%s", s.groupEvent(f))
		case *codec.KeyRotate:
			s.keyRotated(f)
		}
	}
}

// deliver shows a message and, until the person picks a chat, makes its
// sender the one replies go to.
func (s *session) deliver(f *codec.Deliver) {
	ts := time.UnixMilli(int64(f.Time)).Format("15:04:05")
	from := s.name(f.From)
	if f.Group != 0 {
		s.out.say("[%s] %s in group %d: %s", ts, from, f.Group, f.Body)
	} else {
		s.out.say("[%s] %s: %s", ts, from, f.Body)
	}
	s.mu.Lock()
	var moved bool
	if !s.chosen {
		if f.Group != 0 && s.group != f.Group {
			s.group, s.peer, moved = f.Group, "", true
		} else if f.Group == 0 && (s.peer != from || s.group != 0) {
			s.peer, s.group, moved = from, 0, true
		}
	}
	s.mu.Unlock()
	if moved {
		if f.Group != 0 {
			s.out.say("  (replies go to group %d; /to NAME or /g ID to choose)", f.Group)
		} else {
			s.out.say("  (replies go to %s; /to NAME to choose)", from)
		}
	}
}

// ticked records, on the events goroutine, that a message's SENT (sent)
// or a receipt was shown, and reports whether SENT should be skipped: a
// server may make a message deliverable before SENT reaches its sender,
// so ✓✓ can come first, and a late ✓ after it would read as a step back.
func (s *session) ticked(id codec.MsgID, sent bool) (skip bool) {
	now := time.Now()
	if sent {
		if s.receiptFirst.take(id) {
			return true
		}
		s.sentShown.mark(id, now)
		return false
	}
	if !s.sentShown.take(id) {
		s.receiptFirst.mark(id, now)
	}
	return false
}

// sentDelivered shows SENT_DELIVERED, a message's SENT and delivered
// receipt in one frame: ✓✓ at once, even when the store already has the
// message further along. The Client stores entries on its own goroutine
// before they reach this one, so a read receipt that came right behind
// this frame may be stored already; its line follows this one. It is no
// inbox entry (nothing is acknowledged): a crash before the store took it
// leaves the message pending, and the next start resends it with DUP,
// which the server stores: SENT and a delivered RECEIPT come then.
func (s *session) sentDelivered(f *codec.SentDelivered) {
	if m, ok := s.answered(f.ID, history.Delivered, f.Time); ok {
		s.out.say("  ✓✓ %s", s.label(m, 0))
	}
}

// answered moves outgoing message id to st with the server's time (unix
// ms) and returns it as stored now, whether or not that moved it (a
// receipt may have moved it further already); ok is false if the store
// has no such message or failed, which it says.
func (s *session) answered(id codec.MsgID, st history.State, at uint64) (history.Message, bool) {
	_, _, err := s.store.Advance(id, st, time.UnixMilli(int64(at)))
	m, ok, err2 := s.store.Message(id)
	if err = errors.Join(err, err2); err != nil {
		s.out.say("! %v", err)
		return m, false
	}
	return m, ok
}

// maxTickLines bounds the lines one receipt prints (a read receipt can
// name 255 messages).
const maxTickLines = 5

// receipt shows the ticks a receipt brought, one line per message.
func (s *session) receipt(f *codec.Receipt, moved []history.Message) {
	by := s.name(f.By)
	for _, m := range moved {
		s.ticked(m.ID, false)
	}
	for i, m := range moved {
		if i == maxTickLines {
			s.out.say("  … and %d more", len(moved)-i)
			break
		}
		switch f.Kind {
		case codec.ReceiptDelivered:
			s.out.say("  ✓✓ %s", s.label(m, f.By))
		case codec.ReceiptRead:
			s.out.say("  ✓✓ read by %s: %s", by, quote(m.Body))
		case codec.ReceiptExpired:
			s.out.say("  ✗ expired unread, never delivered to %s: %s", by, quote(m.Body))
		}
	}
}

// label names an outgoing message by its chat and first words, so that a
// tick reads as belonging to it. by names the member in a group.
func (s *session) label(m history.Message, by uint64) string {
	switch {
	case m.Group && by != 0:
		return fmt.Sprintf("to %s in group %d: %s", s.name(by), m.Chat, quote(m.Body))
	case m.Group:
		return fmt.Sprintf("to group %d: %s", m.Chat, quote(m.Body))
	}
	return fmt.Sprintf("to %s: %s", s.name(m.Chat), quote(m.Body))
}

// quote gives a message's first words, quoted.
func quote(body string) string {
	const max = 32
	body = strings.Join(strings.Fields(body), " ")
	if r := []rune(body); len(r) > max {
		cut := string(r[:max])
		if i := strings.LastIndexByte(cut, ' '); i > max/2 {
			cut = cut[:i]
		}
		body = cut + "…"
	}
	return `"` + body + `"`
}

// tickMark is an outgoing message's state as ticks.
func tickMark(st history.State) string {
	switch st {
	case history.Pending:
		return "(not sent yet)"
	case history.Sent:
		return "✓"
	case history.Delivered:
		return "✓✓"
	case history.Read:
		return "✓✓ read"
	case history.Failed:
		return "✗ not sent"
	case history.Expired:
		return "✗ expired"
	}
	return ""
}
