package bench

import (
	"bufio"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chatd/codec"
)

// Sender i of n is due at start + (i/n + k) * n/rate: evenly spread over
// one interval, each on its own fixed schedule (no bursts).
func TestScheduleSpreadsSenders(t *testing.T) {
	start := 5 * time.Millisecond
	for _, c := range []struct {
		i, k int
		want time.Duration
	}{
		{0, 0, start},
		{1, 0, start + 12500*time.Microsecond}, // 4 senders at 80 msgs/s: 50 ms apart each, 12.5 ms between senders
		{3, 0, start + 37500*time.Microsecond},
		{0, 2, start + 100*time.Millisecond},
		{2, 3, start + 175*time.Millisecond},
	} {
		s := newSchedule(start, c.i, 4, 80)
		for range c.k {
			s.advance()
		}
		if got := s.due(); got != c.want {
			t.Errorf("sender %d message %d due at %v, want %v", c.i, c.k, got, c.want)
		}
	}
	flat := newSchedule(start, 3, 4, 0)
	flat.advance()
	if got := flat.due(); got != 0 {
		t.Errorf("flat out: due at %v, want 0 (at once)", got)
	}
}

// ackPeer is the server end of a loopback connection that records the
// ACK frames the bench's connection sends.
type ackPeer struct {
	mu   sync.Mutex
	acks []uint64
}

func newAckPair(t *testing.T, every int) (*rawConn, *ackPeer) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc, err := ln.Accept()
	if err != nil {
		nc.Close()
		t.Fatal(err)
	}
	c := &rawConn{nc: nc, br: bufio.NewReader(nc)}
	c.ack.every = every
	p := &ackPeer{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		br := bufio.NewReader(sc)
		var buf []byte
		for {
			b := make([]byte, 4096)
			n, err := br.Read(b)
			if err != nil {
				return
			}
			buf = append(buf, b[:n]...)
			for {
				tp, body, rest, ok, err := codec.Split(buf, 0)
				if err != nil || !ok {
					break
				}
				var a codec.Ack
				if tp == codec.TypeAck && a.Decode(body) == nil {
					p.mu.Lock()
					p.acks = append(p.acks, a.Seq)
					p.mu.Unlock()
				}
				buf = rest
			}
		}
	}()
	t.Cleanup(func() { c.close(); sc.Close(); <-done })
	return c, p
}

func (p *ackPeer) waitFor(t *testing.T, seq uint64) []uint64 {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		p.mu.Lock()
		n := len(p.acks)
		last := uint64(0)
		if n > 0 {
			last = p.acks[n-1]
		}
		p.mu.Unlock()
		if last == seq {
			p.mu.Lock()
			defer p.mu.Unlock()
			return append([]uint64(nil), p.acks...)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	t.Fatalf("no ACK for %d within 5s; got %v", seq, p.acks)
	return nil
}

// A trickle of entries, one per read turn, is acknowledged at most once
// per ackDelay (the rest by the delayed ACK), cumulatively, as the client
// package does; before, the bench sent one ACK per turn.
func TestAckerOnePerDelay(t *testing.T) {
	c, p := newAckPair(t, 1000)
	begin := time.Now()
	const n = 200
	for seq := uint64(1); seq <= n; seq++ {
		c.entry(seq, 100, true)
		if err := c.endTurn(); err != nil {
			t.Fatal(err)
		}
	}
	elapsed := time.Since(begin)
	acks := p.waitFor(t, n)
	if limit := 2 + int(elapsed/ackDelay); len(acks) > limit {
		t.Errorf("%d ACKs for %d entries over %v, want at most %d (one per %v)", len(acks), n, elapsed, limit, ackDelay)
	}
	for i := 1; i < len(acks); i++ {
		if acks[i] <= acks[i-1] {
			t.Errorf("ACKs not increasing: %v", acks)
		}
	}
}

// Half the server's window of entries is acknowledged at once, within a
// turn, so the server never stalls on a full window.
func TestAckerHalfWindow(t *testing.T) {
	c, p := newAckPair(t, 4)
	for seq := uint64(1); seq <= 10; seq++ {
		c.entry(seq, 100, true)
	}
	if err := c.endTurn(); err != nil {
		t.Fatal(err)
	}
	acks := p.waitFor(t, 10)
	if len(acks) != 3 || acks[0] != 4 || acks[1] != 8 {
		t.Errorf("ACKs %v, want [4 8 10]", acks)
	}
}
