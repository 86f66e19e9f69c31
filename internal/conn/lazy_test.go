package conn

import (
	"bufio"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chatd/codec"
)

// TestLazyFrameRidesWithNextFlush queues a lazy frame on a connection whose
// lazy delay is an hour: nothing may flush it but the connection's next
// eager frame, and then both arrive, in queue order.
func TestLazyFrameRidesWithNextFlush(t *testing.T) {
	s, h := startServer(t, Config{LazyDelay: time.Hour})
	nc, br := dial(t, s.Addr().String())
	defer nc.Close()
	rc := h.conn(0)

	buf, ok := rc.Begin()
	if !ok {
		t.Fatal("closed")
	}
	rc.EndLazy((&codec.Pong{Nonce: 8}).Append(buf))
	// Within the hour nothing sends it by itself (checked for 100 ms).
	nc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := br.Peek(1); err == nil {
		t.Fatal("a lazy frame went out by itself")
	}
	nc.SetReadDeadline(time.Time{})
	buf, _ = rc.Begin()
	if !rc.End((&codec.Pong{Nonce: 9}).Append(buf)) {
		t.Fatal("End after a lazy frame did not ask for a flush: the eager frame would wait for the lazy delay")
	}
	rc.Flush()
	expectPongs(t, br, 8, 9)
}

// TestLazyFrameGoesAlone checks the bound: a lazy frame with nothing after
// it arrives by itself, within about the lazy delay, for many connections
// registered at different times.
func TestLazyFrameGoesAlone(t *testing.T) {
	s, h := startServer(t, Config{LazyDelay: 20 * time.Millisecond})
	const n = 20
	type client struct {
		nc interface{ Close() error }
		rd func() (codec.Type, []byte)
	}
	var cs []client
	for i := 0; i < n; i++ {
		nc, br := dial(t, s.Addr().String())
		defer nc.Close()
		cs = append(cs, client{nc, func() (codec.Type, []byte) { return readFrame(t, br) }})
	}
	for round := 0; round < 3; round++ {
		start := time.Now()
		for i := 0; i < n; i++ {
			rc := h.conn(i)
			buf, ok := rc.Begin()
			if !ok {
				t.Fatal("closed")
			}
			rc.EndLazy((&codec.Pong{Nonce: uint64(round*n + i)}).Append(buf))
		}
		var wg sync.WaitGroup
		errs := make(chan string, n)
		for i, c := range cs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.nc.(interface{ SetReadDeadline(time.Time) error }).SetReadDeadline(time.Now().Add(10 * time.Second))
				tp, b := c.rd()
				var p codec.Pong
				if tp != codec.TypePong || p.Decode(b) != nil || p.Nonce != uint64(round*n+i) {
					errs <- "wrong frame"
				}
			}()
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Fatal(e)
		}
		// The server's clock counts whole milliseconds, so a lazy deadline
		// may fall up to one of them before 20 ms of real time.
		if el := time.Since(start); el < 19*time.Millisecond {
			t.Fatalf("round %d: lazy frames arrived after %v, before the lazy delay", round, el)
		}
	}
}

// TestEndLazyRollbackKeepsEagerFlush: a producer that rolls its queue back
// (End with nothing added) after a lazy frame must not make the next eager
// frame wait for the lazy delay.
func TestEndLazyRollbackKeepsEagerFlush(t *testing.T) {
	s, h := startServer(t, Config{LazyDelay: time.Hour})
	nc, br := dial(t, s.Addr().String())
	defer nc.Close()
	rc := h.conn(0)
	buf, _ := rc.Begin()
	rc.EndLazy((&codec.Pong{Nonce: 1}).Append(buf))
	buf, _ = rc.Begin()
	if rc.End(buf) {
		t.Fatal("End with nothing added asked for a flush")
	}
	buf, _ = rc.Begin()
	if !rc.End((&codec.Pong{Nonce: 2}).Append(buf)) {
		t.Fatal("the eager frame after a rollback did not ask for a flush")
	}
	rc.Flush()
	expectPongs(t, br, 1, 2)
}

// expectPongs reads PONG frames and checks their nonces, in order.
func expectPongs(t *testing.T, br *bufio.Reader, nonces ...uint64) {
	t.Helper()
	for _, want := range nonces {
		tp, b := readFrame(t, br)
		var p codec.Pong
		if tp != codec.TypePong || p.Decode(b) != nil || p.Nonce != want {
			t.Fatalf("got %v nonce %d, want PONG %d", tp, p.Nonce, want)
		}
	}
}
