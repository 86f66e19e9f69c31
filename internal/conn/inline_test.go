package conn

import (
	"bytes"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/secure"
)

// inlineHandler is testHandler that runs PING on the poller when ping is
// set, and records for each PING nonce whether its Frame ran there.
type inlineHandler struct {
	testHandler
	ping bool

	mu       sync.Mutex
	onPoller map[uint64]bool
}

// Inline names PING, and TYPING, which testHandler refuses (closing the
// connection from the turn).
func (h *inlineHandler) Inline(t codec.Type) bool {
	return h.ping && (t == codec.TypePing || t == codec.TypeTyping)
}

// InlineAll lets Noise connections' turns run on the poller, with ping.
func (h *inlineHandler) InlineAll() bool { return h.ping }

func (h *inlineHandler) Frame(c *Conn[int], t codec.Type, body []byte) error {
	var p codec.Ping
	if t == codec.TypePing && p.Decode(body) == nil {
		h.mu.Lock()
		h.onPoller[p.Nonce] = onPoller()
		h.mu.Unlock()
	}
	return h.testHandler.Frame(c, t, body)
}

func (h *inlineHandler) ranOnPoller(nonce uint64) (on, seen bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	on, seen = h.onPoller[nonce]
	return on, seen
}

// onPoller reports whether the calling goroutine is netpoll's poller: its
// stack then starts in the poller's event handler, where a worker's starts
// in runner.go's work.
func onPoller() bool {
	buf := make([]byte, 64<<10)
	st := buf[:runtime.Stack(buf, false)]
	return bytes.Contains(st, []byte("netpoll.(*defaultPoll).handler"))
}

// waitBuffered waits until the server holds input of connection i that
// no turn has read yet (a half frame or record).
func (h *inlineHandler) waitBuffered(t *testing.T, i int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for h.conn(i).nc.Reader().Len() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the partial input never reached the server")
		}
		time.Sleep(time.Millisecond)
	}
}

// pingUntilOnPoller pings (nonces from first on, each answered before the
// next) until one runs on the poller, at most 100 times: the worker that
// ran a connection's turn may still hold it and read the next frame itself.
func (h *inlineHandler) pingUntilOnPoller(t *testing.T, first uint64, ping func(nonce uint64)) {
	t.Helper()
	for n := first; n < first+100; n++ {
		ping(n)
		if on, _ := h.ranOnPoller(n); on {
			return
		}
	}
	t.Fatal("no turn ran on the poller")
}

func startInline(t *testing.T, ping bool) (*Server[int], *inlineHandler) {
	h := &inlineHandler{ping: ping, onPoller: map[uint64]bool{}}
	return startServerWith(t, Config{}, h), h
}

// TestInlineTurnRunsOnPoller: a turn of whole frames of a type the
// handler names runs on the poller, with no hand-off, and is counted.
func TestInlineTurnRunsOnPoller(t *testing.T) {
	s, h := startInline(t, true)
	nc, br := dial(t, s.Addr().String())
	defer nc.Close()
	h.pingUntilOnPoller(t, 100, func(n uint64) {
		if _, err := nc.Write((&codec.Ping{Nonce: n}).Append(nil)); err != nil {
			t.Fatal(err)
		}
		readFrame(t, br)
	})
	// Three PINGs in one write: one turn of whole frames.
	var out []byte
	for n := uint64(2); n <= 4; n++ {
		out = (&codec.Ping{Nonce: n}).Append(out)
	}
	if _, err := nc.Write(out); err != nil {
		t.Fatal(err)
	}
	for n := 2; n <= 4; n++ {
		if tp, _ := readFrame(t, br); tp != codec.TypePong {
			t.Fatalf("got %v, want PONG", tp)
		}
	}
	for n := uint64(2); n <= 4; n++ {
		if on, seen := h.ranOnPoller(n); !seen || !on {
			t.Fatalf("PING %d: handled %v, on the poller %v; want on the poller", n, seen, on)
		}
	}
	if got := s.Snapshot().InlineTurns; got == 0 {
		t.Fatal("no inline turn counted")
	}
}

// TestInlineNotForOtherTypes: a handler that names no type gets every
// turn on a worker.
func TestInlineNotForOtherTypes(t *testing.T) {
	s, h := startInline(t, false)
	nc, br := dial(t, s.Addr().String())
	defer nc.Close()
	if _, err := nc.Write((&codec.Ping{Nonce: 2}).Append(nil)); err != nil {
		t.Fatal(err)
	}
	readFrame(t, br)
	if on, seen := h.ranOnPoller(2); !seen || on {
		t.Fatalf("PING 2: handled %v, on the poller %v; want a worker", seen, on)
	}
	if got := s.Snapshot().InlineTurns; got != 0 {
		t.Fatalf("%d inline turns counted", got)
	}
}

// TestPartialFrameNeverHoldsPoller: half a frame goes to a worker, which
// waits for the rest; meanwhile other connections' turns still run on the
// poller and are answered. A turn on the poller that waited for the rest
// would stall them all (and itself: the poller is what reads the rest).
func TestPartialFrameNeverHoldsPoller(t *testing.T) {
	s, h := startInline(t, true)
	slow, slowBr := dial(t, s.Addr().String())
	defer slow.Close()
	other, otherBr := dial(t, s.Addr().String())
	defer other.Close()

	frame := (&codec.Ping{Nonce: 100}).Append(nil)
	if _, err := slow.Write(frame[:len(frame)-3]); err != nil {
		t.Fatal(err)
	}
	h.waitBuffered(t, 0) // slow authenticated first
	polled := 0
	for n := uint64(200); n < 210; n++ {
		if _, err := other.Write((&codec.Ping{Nonce: n}).Append(nil)); err != nil {
			t.Fatal(err)
		}
		if tp, _ := readFrame(t, otherBr); tp != codec.TypePong {
			t.Fatalf("got %v, want PONG", tp)
		}
		if on, _ := h.ranOnPoller(n); on {
			polled++
		}
	}
	// The first may still be read by the worker of other's first turn.
	if polled == 0 {
		t.Fatal("no PING of the other connection ran on the poller")
	}
	if _, err := slow.Write(frame[len(frame)-3:]); err != nil {
		t.Fatal(err)
	}
	if tp, _ := readFrame(t, slowBr); tp != codec.TypePong {
		t.Fatalf("got %v, want PONG", tp)
	}
	if on, seen := h.ranOnPoller(100); !seen || on {
		t.Fatalf("the split PING: handled %v, on the poller %v; want a worker", seen, on)
	}
}

// TestInlineTurnMayClose: a turn on the poller whose frame closes the
// connection (the handler refuses it) closes it and leaves the poller
// serving the others. Before netpoll ran such turns after the batch, the
// close spun forever waiting for the poller to let go of the connection.
func TestInlineTurnMayClose(t *testing.T) {
	s, h := startInline(t, true)
	nc, br := dial(t, s.Addr().String())
	defer nc.Close()
	typing := []byte{0, 0, 0, 2, byte(codec.TypeTyping), 1} // length 2: the type and one byte
	if _, err := nc.Write(typing); err != nil {
		t.Fatal(err)
	}
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("the connection stayed open after a refused frame")
	} else if ne, ok := err.(interface{ Timeout() bool }); ok && ne.Timeout() {
		t.Fatal("the connection was not closed within 10 s")
	}
	deadline := time.Now().Add(10 * time.Second)
	for h.closed.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("Closed never ran")
		}
		time.Sleep(time.Millisecond)
	}
	other, obr := dial(t, s.Addr().String()) // the poller still serves
	defer other.Close()
	if _, err := other.Write((&codec.Ping{Nonce: 7}).Append(nil)); err != nil {
		t.Fatal(err)
	}
	if tp, _ := readFrame(t, obr); tp != codec.TypePong {
		t.Fatalf("got %v, want PONG", tp)
	}
}

// TestInlineNoiseTurn: on an established Noise session of an
// authenticated connection, a turn of whole records runs on the poller
// when the handler runs every type inline; a record split across reads
// goes to a worker, which waits for its rest.
func TestInlineNoiseTurn(t *testing.T) {
	key, err := secure.GenerateKeypair()
	if err != nil {
		t.Fatal(err)
	}
	h := &inlineHandler{ping: true, onPoller: map[uint64]bool{}}
	s := startServerWith(t, Config{NoiseKey: &key}, h)
	p := dialNoise(t, s)
	p.send(t, (&codec.Ping{Nonce: 1}).Append(nil)) // authenticates (testHandler)
	if tp, _ := p.next(t); tp != codec.TypePong {
		t.Fatalf("got %v, want PONG", tp)
	}
	h.pingUntilOnPoller(t, 2, func(n uint64) {
		p.send(t, (&codec.Ping{Nonce: n}).Append(nil))
		if tp, _ := p.next(t); tp != codec.TypePong {
			t.Fatalf("got %v, want PONG", tp)
		}
	})

	ct, err := p.tx.Encrypt(nil, nil, (&codec.Ping{Nonce: 1000}).Append(nil))
	if err != nil {
		t.Fatal(err)
	}
	rec := record(ct)
	if _, err := p.nc.Write(rec[:5]); err != nil {
		t.Fatal(err)
	}
	h.waitBuffered(t, 0)
	if _, err := p.nc.Write(rec[5:]); err != nil {
		t.Fatal(err)
	}
	if tp, _ := p.next(t); tp != codec.TypePong {
		t.Fatalf("got %v, want PONG", tp)
	}
	if on, seen := h.ranOnPoller(1000); !seen || on {
		t.Fatalf("the split record: handled %v, on the poller %v; want a worker", seen, on)
	}
}
