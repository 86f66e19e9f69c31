package conn

import (
	"errors"
	"testing"

	"github.com/chatd/chatd/codec"
)

// relayHandler is testHandler, but a TYPING from the second connection
// queues an IS_TYPING on the first and flushes it after the turn.
type relayHandler struct{ testHandler }

func (h *relayHandler) Frame(c *Conn[int], t codec.Type, body []byte) error {
	if t != codec.TypeTyping {
		return h.testHandler.Frame(c, t, body)
	}
	o := h.conn(0)
	buf, ok := o.Begin()
	if !ok {
		return errors.New("recipient closed")
	}
	if o.End((&codec.IsTyping{From: 2, State: codec.TypingStarted}).Append(buf)) {
		c.FlushAfterTurn(o)
	}
	return nil
}

// TestFlushAfterTurn: frames a turn queues on another connection reach it
// when the turn ends, in one write for the whole turn.
func TestFlushAfterTurn(t *testing.T) {
	h := &relayHandler{}
	s := startServerWith(t, Config{}, h)
	to, toR := dial(t, s.Addr().String())
	defer to.Close()
	from, _ := dial(t, s.Addr().String())
	defer from.Close()
	before := s.Snapshot()
	var out []byte
	for i := 0; i < 5; i++ {
		out = (&codec.Typing{To: 1, State: codec.TypingStarted}).Append(out)
	}
	if _, err := from.Write(out); err != nil { // one write: most likely one turn
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if tp, _ := readFrame(t, toR); tp != codec.TypeIsTyping {
			t.Fatalf("frame %d: %v, want IS_TYPING", i, tp)
		}
	}
	after := s.Snapshot()
	turns, writes := after.Turns-before.Turns, after.Writes-before.Writes
	if writes != turns || turns == 0 {
		t.Fatalf("%d writes to the recipient for 5 frames read in %d turns: want one per turn", writes, turns)
	}
}
