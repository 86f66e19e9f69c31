package conn

import (
	"context"
	"encoding/binary"

	"github.com/chatd/chatd/codec"
)

// A read turn runs on the poller goroutine itself, with no hand-off to a
// worker, when it cannot wait: the input netpoll has buffered for the
// connection is whole frames, each of a type the Handler says never waits
// (InlineHandler.Inline), or, on an established Noise session of an
// authenticated connection, whole records, when the Handler says that of
// every type (InlineAll: a record's frame types are sealed until the turn
// opens it). Anything else goes to a worker as before: a partial frame or
// record (the turn would wait for the rest, and a slowloris client would
// hold the poller), a Noise handshake, a WebSocket connection, a turn
// before the preamble, a type the Handler does not name.
//
// At 1,000 pairs and 20,000 msgs/s the hand-offs were the server's
// latency: a trace showed about 150 worker goroutines runnable at any
// moment, each readable event waiting 3.4 ms on average for a core, and
// the commit lanes queued behind them. BENCHMARKS.md has the figures.

// InlineHandler is a Handler that names the frame types whose Frame never
// waits: no round trip to another node, no synced write, no lock held
// across either. Reading from the store's cache or disk is allowed (a
// drain, a group's first load): it takes CPU, not a peer's time. A turn of
// only such frames runs on the poller.
type InlineHandler interface {
	// Inline reports whether Frame never waits for a frame of type t.
	Inline(t codec.Type) bool
	// InlineAll reports whether Frame never waits for any frame from an
	// authenticated connection, so that a Noise connection's turns, whose
	// types are sealed until the turn opens them, may run on the poller.
	InlineAll() bool
}

// inliner is a connection context that can tell whether its next read
// turn may run on the poller.
type inliner interface{ wholeInput() bool }

// runInline is netpoll's Config.Inline: netpoll asks it on the poller when
// input arrives for a connection with no turn running, and runs the turn
// itself, after the rest of the batch of events, when it says yes.
func runInline(ctx context.Context) bool {
	c, ok := ctx.(inliner)
	return ok && c.wholeInput()
}

// maxInlinePeek bounds the input a turn on the poller looks through
// first; more is handed to a worker.
const maxInlinePeek = 64 << 10

// wholeInput reports whether c's next read turn may run on the poller (see
// the top of this file), and counts it if so. It runs on the poller before
// the turn (netpoll holds the connection's processing lock, so no turn
// reads meanwhile); the turn, run later in the same batch, sees the same
// input, since the poller is the one that reads it.
func (c *Conn[T]) wholeInput() bool {
	s := c.srv
	st := c.state.Load()
	if s.inline == nil || c.ws != nil || st&(statePreamble|stateClosed) != statePreamble {
		return false
	}
	sealed := c.sec != nil
	if sealed && (c.sec.sess == nil || st&stateAuthed == 0 || !s.inline.InlineAll()) {
		return false
	}
	r := c.nc.Reader()
	n := r.Len()
	if n == 0 || n > maxInlinePeek {
		return false
	}
	b, err := r.Peek(n)
	if err != nil {
		return false
	}
	for len(b) > 0 {
		if sealed { // records: a 2-byte length, then the sealed bytes
			if len(b) < 2 || len(b) < 2+int(binary.BigEndian.Uint16(b)) {
				return false
			}
			b = b[2+int(binary.BigEndian.Uint16(b)):]
			continue
		}
		t, _, rest, ok, err := codec.Split(b, s.cfg.MaxFrame)
		if !ok || err != nil || !s.inline.Inline(t) {
			return false // a partial frame, or one the turn refuses: a worker's
		}
		b = rest
	}
	s.stats.inlined.Add(1)
	return true
}
