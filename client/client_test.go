package client_test

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/account"
	"github.com/chatd/chatd/internal/server"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/cloudwego/netpoll.(*defaultPoll).Wait"),
		goleak.IgnoreTopFunction("github.com/bytedance/gopkg/util/gopool.(*worker).run.func1"),
		goleak.IgnoreTopFunction("runtime.gopark"),
		goleak.IgnoreAnyFunction("github.com/cockroachdb/pebble/v2/internal/cache.(*Cache).runCleaner"),
	)
}

// startServer runs a server on a random loopback port until stop (or the
// test's end) closes it.
func startServer(t *testing.T, cfg server.Config) (s *server.Server, stop func()) {
	t.Helper()
	s, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		s.Close()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}
	t.Cleanup(stop)
	return s, stop
}

func register(t *testing.T, addr, name string) *client.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Register(ctx, name, "password-"+name); err != nil {
		t.Fatalf("register %s: %v", name, err)
	}
	return c
}

// TestDrainAcksWithinRateLimit is issue 12.4: the client package sent one
// ACK per inbox entry, so draining a backlog passed the server's default
// limit of 1,000 frames a second and got closed (ERROR 50). A user with
// 10,000 waiting entries logs in to a server with the default limits and
// must drain them all without being rate limited.
func TestDrainAcksWithinRateLimit(t *testing.T) {
	const n = 10_000
	dir := t.TempDir()
	cfg := server.Config{
		Addr: "127.0.0.1:0", DataDir: dir, Plaintext: true,
		Hashing:   account.Hashing{Time: 1, MemoryKiB: 64},
		CacheSize: 8 << 20, MemTableSize: 4 << 20,
		Quota: 2 * n,
	}

	// Fill bob's inbox on a server without rate limits (the sender would
	// be limited too), then restart with the defaults.
	fill := cfg
	fill.MaxFrameRate, fill.MaxByteRate = -1, -1
	s, stop := startServer(t, fill)
	alice := register(t, s.Addr().String(), "alice")
	bob := register(t, s.Addr().String(), "bob")
	bobID := bob.Welcome.User
	bob.Close()
	var body [8]byte
	sent := 0
	for i := 0; i < n; i++ {
		binary.BigEndian.PutUint64(body[:], uint64(i))
		if _, err := alice.Send(bobID, body[:], i%64 == 63 || i == n-1); err != nil {
			t.Fatal(err)
		}
		for len(alice.Events()) > 0 { // take SENTs as they come so the connection never backs up
			if _, ok := (<-alice.Events()).(*codec.Sent); ok {
				sent++
			}
		}
	}
	timeout := time.After(30 * time.Second)
	for sent < n {
		select {
		case f := <-alice.Events():
			if _, ok := f.(*codec.Sent); ok {
				sent++
			}
		case <-timeout:
			t.Fatalf("only %d of %d SENT", sent, n)
		}
	}
	alice.Close()
	stop()

	s, _ = startServer(t, cfg) // default frame and byte rate limits
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := client.Connect(ctx, client.Options{Addr: s.Addr().String(), Name: "bob", Password: "password-bob", Plaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got := make([]bool, n)
	for left := n; left > 0; {
		select {
		case f, ok := <-cl.Events():
			if !ok {
				t.Fatalf("client ended: %v", cl.Err())
			}
			switch f := f.(type) {
			case *codec.Deliver:
				i := binary.BigEndian.Uint64(f.Body)
				if i >= n || got[i] {
					t.Fatalf("unexpected or repeated delivery %d", i)
				}
				got[i] = true
				left--
			case *codec.Error:
				t.Fatalf("bob got ERROR %v after %d entries", f, n-left)
			}
		case <-ctx.Done():
			t.Fatalf("drained %d of %d", n-left, n)
		}
	}
	elapsed := time.Since(start)
	st := s.Stats().Conn
	if st.RateLimited != 0 {
		t.Fatalf("%d connections rate limited", st.RateLimited)
	}
	t.Logf("drained %d entries in %v (%.0f/s); %d frames in from all connections",
		n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), st.FramesIn)
	if st.FramesIn > n/10 {
		t.Fatalf("%d frames from the client for %d entries: acknowledgements are not batched", st.FramesIn, n)
	}
}

// TestReceiptAcksWait is issue 14.1: a user sending now and then gets a
// delivered receipt per message, and the client acknowledged each at
// once, a frame (and a read(2) on the server) per message that nobody
// waits for. Receipts alone now wait receiptAckDelay, while a message's
// ACK (which makes its sender's tick) still goes within ackDelay.
func TestReceiptAcksWait(t *testing.T) {
	const n = 20
	s, _ := startServer(t, server.Config{
		Addr: "127.0.0.1:0", DataDir: t.TempDir(), Plaintext: true,
		Hashing:   account.Hashing{Time: 1, MemoryKiB: 64},
		CacheSize: 8 << 20, MemTableSize: 4 << 20,
		ReceiptDelay: -1, // receipts go at once: this test is about the client's side
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	connect := func(name string) *client.Client {
		cl, err := client.Connect(ctx, client.Options{Addr: s.Addr().String(), Name: name, Password: "password-" + name,
			Register: true, Plaintext: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close() })
		return cl
	}
	alice, bob := connect("alice"), connect("bob")
	go func() { // bob's application takes what comes; his client acknowledges
		for range bob.Events() {
		}
	}()
	before := s.Stats().Conn.FramesIn
	receipts := 0
	for i := 0; i < n; i++ {
		if _, err := alice.Send(bob.User(), []byte("hello")); err != nil {
			t.Fatal(err)
		}
		pace := time.After(20 * time.Millisecond) // a user typing: one message every 20 ms
	wait:
		for {
			select {
			case f := <-alice.Events():
				if r, ok := f.(*codec.Receipt); ok && r.Kind == codec.ReceiptDelivered {
					receipts += r.IDs.Len()
				}
			case <-pace:
				break wait
			}
		}
	}
	for receipts < n {
		select {
		case f := <-alice.Events():
			if r, ok := f.(*codec.Receipt); ok && r.Kind == codec.ReceiptDelivered {
				receipts += r.IDs.Len()
			}
		case <-ctx.Done():
			t.Fatalf("%d of %d delivered receipts", receipts, n)
		}
	}
	// n SENDs, bob's ACKs (up to one per message), alice's receipt ACKs:
	// up to n more when each is acknowledged at once, a handful now.
	frames := s.Stats().Conn.FramesIn - before
	t.Logf("%d frames in for %d messages", frames, n)
	if frames > 2*n+n/4 {
		t.Fatalf("%d frames in for %d messages: receipts are acknowledged one by one", frames, n)
	}
}
