package conn

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatd/chatd/codec"
	"go.uber.org/goleak"
)

// leakOpts ignore netpoll's global poller and its pool workers, which
// outlive any server.
var leakOpts = []goleak.Option{
	goleak.IgnoreAnyFunction("github.com/cloudwego/netpoll.(*defaultPoll).Wait"),
	goleak.IgnoreTopFunction("github.com/bytedance/gopkg/util/gopool.(*worker).run.func1"),
	goleak.IgnoreTopFunction("runtime.gopark"),
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, leakOpts...) }

// testHandler authenticates on PING (answering PONG), remembers every
// connection, and records what closed.
type testHandler struct {
	mu     sync.Mutex
	conns  []*Conn[int]
	closed atomic.Int64
	frames atomic.Int64
	// late records, for each closed connection, how long past its deadline
	// the server closed it: Keepalive after the last input if
	// authenticated, else AuthTimeout after accept.
	late []time.Duration
}

func (h *testHandler) Frame(c *Conn[int], t codec.Type, body []byte) error {
	h.frames.Add(1)
	switch t {
	case codec.TypePing:
		var p codec.Ping
		if err := p.Decode(body); err != nil {
			return err
		}
		if !c.IsAuthenticated() {
			c.Authenticated()
			h.mu.Lock()
			c.State = len(h.conns)
			h.conns = append(h.conns, c)
			h.mu.Unlock()
		}
		if buf, ok := c.Begin(); ok {
			c.End((&codec.Pong{Nonce: p.Nonce}).Append(buf))
		}
		return nil
	}
	return errors.New("unexpected frame")
}

func (h *testHandler) Closed(c *Conn[int]) {
	since, deadline := c.opened, c.srv.cfg.AuthTimeout
	if c.IsAuthenticated() {
		since, deadline = c.lastRead.Load(), c.srv.cfg.Keepalive
	}
	d := time.Duration(c.srv.clock.now()-since)*time.Millisecond - deadline
	h.mu.Lock()
	h.late = append(h.late, d)
	h.mu.Unlock()
	h.closed.Add(1)
}

func (h *testHandler) conn(i int) *Conn[int] {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.conns[i]
}

func startServer(t *testing.T, cfg Config) (*Server[int], *testHandler) {
	t.Helper()
	h := &testHandler{}
	return startServerWith(t, cfg, h), h
}

// startServerWith starts a plaintext server with handler h on a free port
// and shuts it down at the test's end.
func startServerWith(t *testing.T, cfg Config, h Handler[int]) *Server[int] {
	t.Helper()
	cfg.AllowPlaintext = true
	s, err := New[int](cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		<-done
	})
	return s
}

// dial connects, sends the preamble and one PING, and waits for the PONG,
// after which the server has registered the connection.
func dial(t testing.TB, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	out := codec.AppendPreamble(nil, codec.TransportPlain)
	out = (&codec.Ping{Nonce: 1}).Append(out)
	if _, err := nc.Write(out); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	if tp, _ := readFrame(t, br); tp != codec.TypePong {
		t.Fatalf("got %v, want PONG", tp)
	}
	return nc, br
}

func readFrame(t testing.TB, br *bufio.Reader) (codec.Type, []byte) {
	t.Helper()
	var hdr [4]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		t.Fatalf("read header: %v", err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	b := make([]byte, n)
	if _, err := io.ReadFull(br, b); err != nil {
		t.Fatalf("read body: %v", err)
	}
	return codec.Type(b[0]), b[1:]
}

// TestManyWritersOneRecipient has many goroutines route frames to one
// connection at once, as the router does, and checks that every frame
// arrives whole and each writer's frames arrive in order. Under -race
// netpoll swaps in a locked buffer, so this test must pass without -race
// too: CI runs it in both modes.
func TestManyWritersOneRecipient(t *testing.T) {
	s, h := startServer(t, Config{})
	nc, br := dial(t, s.Addr().String())
	defer nc.Close()
	rc := h.conn(0)

	const writers, perWriter = 8, 2000
	body := make([]byte, 120)
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			id := codec.MsgID{byte(w)}
			for i := 1; i <= perWriter; i++ {
				buf, ok := rc.Begin()
				if !ok {
					t.Error("recipient closed")
					return
				}
				if rc.End(codec.AppendDeliver(buf, uint64(i), &id, uint64(w), 0, 0, body)) || i%16 == 0 {
					rc.Flush()
				}
			}
			rc.Flush()
		}(w)
	}
	next := make([]uint64, writers)
	for got := 0; got < writers*perWriter; got++ {
		tp, b := readFrame(t, br)
		var d codec.Deliver
		if tp != codec.TypeDeliver || d.Decode(b) != nil {
			t.Fatalf("frame %d: corrupt %v frame", got, tp)
		}
		if d.From >= writers || d.ID[0] != byte(d.From) || len(d.Body) != len(body) {
			t.Fatalf("frame %d: fields mixed up: %+v", got, d)
		}
		if next[d.From]++; d.Seq != next[d.From] {
			t.Fatalf("writer %d: got seq %d, want %d", d.From, d.Seq, next[d.From])
		}
	}
	wg.Wait()
}

// TestSlowConsumer fills the queue of a client that never reads and checks
// that the server closes it, counts it, and keeps serving others.
func TestSlowConsumer(t *testing.T) {
	s, h := startServer(t, Config{MaxOutbound: 256 << 10, WriteTimeout: 200 * time.Millisecond})
	sc, frame := slowClient(t, s, h)
	flood(t, sc, frame, func() bool { return s.Snapshot().SlowConsumers != 0 }, "slow consumer was never closed")
	waitFor(t, func() bool { return h.closed.Load() == 1 })
	// Others are unaffected.
	other, br := dial(t, s.Addr().String())
	defer other.Close()
	other.Write((&codec.Ping{Nonce: 7}).Append(nil))
	if tp, _ := readFrame(t, br); tp != codec.TypePong {
		t.Fatalf("other client got %v", tp)
	}
}

// slowClient connects a client that never reads and returns the server's
// side of it with a 4,000-byte DELIVER to queue there.
func slowClient(t *testing.T, s *Server[int], h *testHandler) (*Conn[int], []byte) {
	t.Helper()
	slow, _ := dial(t, s.Addr().String())
	t.Cleanup(func() { slow.Close() })
	return h.conn(0), codec.AppendDeliver(nil, 1, &codec.MsgID{}, 1, 0, 0, make([]byte, 4000))
}

// flood writes frame to sc without pause until done says the server has
// acted, failing with msg if it has not within 10 s.
func flood(t *testing.T, sc *Conn[int], frame []byte, done func() bool, msg string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !done(); {
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
		if sc.Write(frame) {
			sc.Flush()
		}
	}
}

// TestWriteTimeoutClosesSlowConsumer stops reading while the server's
// queue stays far below MaxOutbound, so that only the slow-path flusher's
// write timeout can close the connection. That close used to deadlock: the
// flusher held the write lock the close callback it ran itself wanted.
func TestWriteTimeoutClosesSlowConsumer(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t, leakOpts...) }) // runs after the server's shutdown
	const writeTimeout = 200 * time.Millisecond
	s, h := startServer(t, Config{MaxOutbound: 64 << 20, WriteTimeout: writeTimeout})
	sc, frame := slowClient(t, s, h)
	flood(t, sc, frame, func() bool { return s.Snapshot().SlowFlushes != 0 }, "the socket never filled up")
	start := time.Now()
	for i := 0; i < 100; i++ { // more behind the flusher, still far below MaxOutbound
		sc.Write(frame)
	}
	for h.closed.Load() == 0 && time.Since(start) < 5*time.Second {
		time.Sleep(5 * time.Millisecond)
	}
	if h.closed.Load() != 1 {
		t.Fatalf("Closed ran %d times within %v of the flusher starting", h.closed.Load(), time.Since(start))
	}
	if d := time.Since(start); d > writeTimeout+2*time.Second {
		t.Errorf("closed %v after the flusher started, write timeout %v", d, writeTimeout)
	}
	if st := s.Snapshot(); st.SlowConsumers != 1 || st.Open != 0 {
		t.Errorf("slow consumers %d, open %d; want 1 and 0", st.SlowConsumers, st.Open)
	}
}

// TestStalledPartialFrame sends half a header and stops: the server must
// close the connection after ReadTimeout without spinning.
func TestStalledPartialFrame(t *testing.T) {
	s, h := startServer(t, Config{ReadTimeout: 300 * time.Millisecond})
	nc, _ := dial(t, s.Addr().String())
	defer nc.Close()
	nc.Write([]byte{0, 0})
	start := time.Now()
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(nc); err != nil {
		t.Fatalf("read: %v", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 3*time.Second {
		t.Fatalf("closed after %v, want about the 300ms read timeout", d)
	}
	waitFor(t, func() bool { return h.closed.Load() == 1 })
	if s.Snapshot().ReadTimeouts == 0 {
		t.Error("read timeout not counted")
	}
}

func TestBadInputGetsErrorAndClose(t *testing.T) {
	s, _ := startServer(t, Config{MaxFrame: 1024})
	cases := []struct {
		name  string
		bytes []byte
		code  codec.Code
	}{
		{"http", []byte("GET / HTTP/1.1\r\n\r\n"), codec.CodeBadPreamble},
		{"version 9", []byte{'c', 'h', 'a', 't', 'd', 9, 0, 0}, codec.CodeVersion},
		{"reserved byte set", []byte{'c', 'h', 'a', 't', 'd', 1, 0, 0x80}, codec.CodeBadPreamble},
		{"noise not yet", codec.AppendPreamble(nil, codec.TransportNoiseXX), codec.CodeEncryption},
		{"oversized", append(codec.AppendPreamble(nil, codec.TransportPlain), 0x7f, 0xff, 0xff, 0xff, 0x10), codec.CodeTooLarge},
		{"zero length", append(codec.AppendPreamble(nil, codec.TransportPlain), 0, 0, 0, 0), codec.CodeMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			nc, err := net.Dial("tcp", s.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			nc.Write(tc.bytes)
			nc.SetReadDeadline(time.Now().Add(5 * time.Second))
			br := bufio.NewReader(nc)
			tp, b := readFrame(t, br)
			var e codec.Error
			if tp != codec.TypeError || e.Decode(b) != nil || e.Code != tc.code {
				t.Fatalf("got %v %x, want ERROR %v", tp, b, tc.code)
			}
			if _, err := br.ReadByte(); err != io.EOF {
				t.Fatalf("connection not closed: %v", err)
			}
		})
	}
}

func TestSweeperClosesIdleAndUnauthenticated(t *testing.T) {
	s, h := startServer(t, Config{Keepalive: 1500 * time.Millisecond, AuthTimeout: time.Second, SweepInterval: 100 * time.Millisecond})
	authed, abr := dial(t, s.Addr().String())
	defer authed.Close()
	unauth, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer unauth.Close()
	unauth.Write(codec.AppendPreamble(nil, codec.TransportPlain))
	start := time.Now()
	ubr := bufio.NewReader(unauth)
	tp, b := readFrame(t, ubr)
	var e codec.Error
	if tp != codec.TypeError || e.Decode(b) != nil || e.Code != codec.CodeAuthTimeout {
		t.Fatalf("unauthenticated: got %v", tp)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("auth timeout took %v", d)
	}
	tp, b = readFrame(t, abr)
	var k codec.Kicked
	if tp != codec.TypeKicked || k.Decode(b) != nil || k.Reason != codec.KickIdle {
		t.Fatalf("idle: got %v", tp)
	}
	waitFor(t, func() bool { return h.closed.Load() == 2 })
}

func TestIdleConnectionsHoldNoGoroutines(t *testing.T) {
	s, h := startServer(t, Config{})
	runtime.GC()
	base := runtime.NumGoroutine()
	const n = 500
	conns := make([]net.Conn, 0, n)
	for i := 0; i < n; i++ {
		nc, _ := dial(t, s.Addr().String())
		conns = append(conns, nc)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	waitFor(t, func() bool { return s.Len() == n && int(h.frames.Load()) == n })
	// Pool workers that served the logins go idle and exit on their own:
	// poll until the count settles within bounds, or fail at the deadline.
	deadline := time.Now().Add(5 * time.Second)
	for g := runtime.NumGoroutine(); g > base+20; g = runtime.NumGoroutine() {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines with %d idle connections (started at %d)", g, n, base)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
