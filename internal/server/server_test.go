package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/account"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv("CHATD_TEST_CHILD") == "serve" {
		runChild() // this process is a crash test's server
		return
	}
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/cloudwego/netpoll.(*defaultPoll).Wait"),
		goleak.IgnoreTopFunction("github.com/bytedance/gopkg/util/gopool.(*worker).run.func1"),
		goleak.IgnoreTopFunction("runtime.gopark"),
		// Pebble's background goroutines end when the DB closes; these are
		// process-wide helpers it keeps.
		goleak.IgnoreAnyFunction("github.com/cockroachdb/pebble/v2/internal/cache.(*Cache).runCleaner"),
	)
}

// testConfig is a server on a random loopback port with cheap password
// hashing (tests register many users) and a fresh data folder.
func testConfig(t testing.TB) Config {
	return Config{
		Addr:         "127.0.0.1:0",
		DataDir:      t.TempDir(),
		Plaintext:    true,
		Hashing:      account.Hashing{Time: 1, MemoryKiB: 64},
		CacheSize:    8 << 20,
		MemTableSize: 4 << 20,
		// Tests register hundreds of users from 127.0.0.1 and send
		// thousands of frames a second; the limits have tests of their own.
		LoginsPerSource:     -1,
		FailedLoginsPerUser: -1,
		MaxFrameRate:        -1,
		MaxByteRate:         -1,
		WSAddr:              wsTestAddr(),
		// These tests read frames in a fixed order, often waiting for a
		// SENT before reading the recipient's DELIVER: with live delivery
		// that SENT waits for an ACK they have not sent yet, and comes
		// only once the message is stored, with a second DELIVER. They
		// test the store-first path, which every message still takes
		// when its recipient is offline, busy or slow; live_test.go and
		// the tests through the client package (which acknowledges as a
		// client should) run with live delivery on.
		LiveWait: -1,
	}
}

func startServer(t testing.TB, cfg Config) *Server {
	t.Helper()
	s, stop := serve(t, cfg)
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// serve starts a server the test stops itself, to start another on the
// same data folder: stop closes it and waits for Serve to return.
func serve(t testing.TB, cfg Config) (s *Server, stop func() error) {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	return s, func() error {
		var errs []error
		if err := s.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close: %w", err))
		}
		if err := <-done; err != nil {
			errs = append(errs, fmt.Errorf("serve: %w", err))
		}
		return errors.Join(errs...)
	}
}

func dial(t testing.TB, s *Server) *client.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, clientAddr(t, s))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// register registers name with password "password-"+name on a new
// connection; login logs in as a user register made.
func register(t testing.TB, s *Server, name string) *client.Conn {
	t.Helper()
	return signIn(t, s, "register", (*client.Conn).Register, name)
}

func login(t testing.TB, s *Server, name string) *client.Conn {
	t.Helper()
	return signIn(t, s, "login", (*client.Conn).Login, name)
}

func signIn(t testing.TB, s *Server, how string, do func(*client.Conn, context.Context, string, string) (codec.Welcome, error), name string) *client.Conn {
	t.Helper()
	c := dial(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := do(c, ctx, name, "password-"+name); err != nil {
		t.Fatalf("%s %s: %v", how, name, err)
	}
	return c
}

// next returns the next event of the wanted type, failing on anything
// unexpected (PONGs are skipped). next[codec.Frame] is the next frame
// whatever its type.
func next[F codec.Frame](t testing.TB, c *client.Conn) F {
	t.Helper()
	var zero F
	deadline := time.After(10 * time.Second)
	for {
		f := recv[F](t, c, deadline)
		if ev, isEvent := f.(*codec.GroupEvent); isEvent {
			if _, wantEvent := any(ev).(F); !wantEvent {
				c.Ack(ev.Seq, true) // membership news, not what this test waits for
				continue
			}
		}
		if want, ok := f.(F); ok {
			return want
		}
		t.Fatalf("got %v %+v, want %T", f.Type(), f, zero)
	}
}

// until returns c's next frame of type F, passing over every other frame.
func until[F codec.Frame](t testing.TB, c *client.Conn) F {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		if want, ok := recv[F](t, c, deadline).(F); ok {
			return want
		}
	}
}

// recv returns c's next frame other than PONG, failing the test if the
// connection ends or no frame comes before deadline (F names what the
// caller waits for).
func recv[F codec.Frame](t testing.TB, c *client.Conn, deadline <-chan time.Time) codec.Frame {
	t.Helper()
	for {
		select {
		case f, ok := <-c.Events():
			if !ok {
				t.Fatalf("connection ended: %v", c.Err())
			}
			if _, pong := f.(*codec.Pong); !pong {
				return f
			}
		case <-deadline:
			var zero F
			if any(zero) == nil {
				t.Fatal("no frame within 10s")
			}
			t.Fatalf("no %T within 10s", zero)
		}
	}
}

// TestAliceToBob is the foundation's acceptance test: two clients
// register, and 1,000 messages from alice reach bob in order, each
// answered by SENT.
func TestAliceToBob(t *testing.T) {
	s := startServer(t, testConfig(t))
	alice := register(t, s, "alice")
	bob := register(t, s, "bob")
	bobID := bob.Welcome.User

	const n = 1000
	ids := make([]codec.MsgID, n)
	for i := range ids {
		id, err := alice.Send(bobID, []byte(fmt.Sprintf("message %d", i)), i%50 == 49 || i == n-1)
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id
	}
	sent := map[codec.MsgID]bool{}
	for len(sent) < n {
		f := next[*codec.Sent](t, alice)
		if sent[f.ID] {
			t.Fatalf("SENT twice for %v", f.ID)
		}
		sent[f.ID] = true
	}
	for _, id := range ids {
		if !sent[id] {
			t.Fatalf("no SENT for %v", id)
		}
	}
	var last uint64
	for i := 0; i < n; i++ {
		d := next[*codec.Deliver](t, bob)
		if d.ID != ids[i] || string(d.Body) != fmt.Sprintf("message %d", i) || d.From != alice.Welcome.User {
			t.Fatalf("delivery %d: got %q from %d, want %q", i, d.Body, d.From, fmt.Sprintf("message %d", i))
		}
		if d.Seq <= last {
			t.Fatalf("delivery %d: seq %d after %d", i, d.Seq, last)
		}
		last = d.Seq
		if i%100 == 99 {
			bob.Ack(d.Seq, true)
		}
	}
	// Delivered receipts reach alice for everything bob acknowledged.
	got := 0
	for got < n {
		r := next[*codec.Receipt](t, alice)
		if r.Kind != codec.ReceiptDelivered || r.By != bobID {
			t.Fatalf("receipt %+v", r)
		}
		got += r.IDs.Len()
		alice.Ack(r.Seq, true)
	}
	// Everything acknowledged leaves the inboxes.
	waitFor(t, func() bool {
		a, _ := s.inbox.Count(alice.Welcome.User)
		b, _ := s.inbox.Count(bobID)
		return a == 0 && b == 0
	})
}

func TestOfflineDeliveryOnLogin(t *testing.T) {
	s := startServer(t, testConfig(t))
	alice := register(t, s, "alice")
	bob := register(t, s, "bob")
	bobID, tok := bob.Welcome.User, bob.Welcome.Token
	bob.Close()
	waitFor(t, func() bool { return s.sessions.Len() == 1 })

	for i := 0; i < 600; i++ { // more than one window
		if _, err := alice.Send(bobID, []byte(fmt.Sprint(i)), i == 599); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 600; i++ {
		next[*codec.Sent](t, alice)
	}
	bob2 := dial(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := bob2.Resume(ctx, tok); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 600; i++ {
		d := next[*codec.Deliver](t, bob2)
		if string(d.Body) != fmt.Sprint(i) {
			t.Fatalf("offline delivery %d: got %q", i, d.Body)
		}
		bob2.Ack(d.Seq, i%32 == 31 || i == 599)
	}
}

func TestSecondLoginKicksFirst(t *testing.T) {
	s := startServer(t, testConfig(t))
	first := register(t, s, "alice")
	login(t, s, "alice")
	k := next[*codec.Kicked](t, first)
	if k.Reason != codec.KickElsewhere {
		t.Fatalf("kick reason %v", k.Reason)
	}
	<-first.Done()
	if n := s.sessions.Len(); n != 1 {
		t.Fatalf("%d sessions, want 1", n)
	}
}

func TestAuthErrors(t *testing.T) {
	s := startServer(t, testConfig(t))
	register(t, s, "alice")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cases := []struct {
		name string
		do   func(c *client.Conn) error
		code codec.Code
	}{
		{"unknown user", func(c *client.Conn) error { _, err := c.Login(ctx, "nobody", "password1"); return err }, codec.CodeUnknownUser},
		{"wrong password", func(c *client.Conn) error { _, err := c.Login(ctx, "alice", "password1"); return err }, codec.CodeWrongPassword},
		{"name taken", func(c *client.Conn) error { _, err := c.Register(ctx, "alice", "password1"); return err }, codec.CodeNameTaken},
		{"invalid name", func(c *client.Conn) error { _, err := c.Register(ctx, "Alice!", "password1"); return err }, codec.CodeInvalidName},
		{"short password", func(c *client.Conn) error { _, err := c.Register(ctx, "carol", "short"); return err }, codec.CodeInvalidPassword},
		{"bad token", func(c *client.Conn) error { _, err := c.Resume(ctx, codec.Token{1}); return err }, codec.CodeInvalidToken},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, s)
			var e *codec.Error
			if err := tc.do(c); !errors.As(err, &e) || e.Code != tc.code {
				t.Fatalf("got %v, want %v", err, tc.code)
			}
			// The connection stays usable: a correct login still works.
			if _, err := c.Login(ctx, "alice", "password-alice"); err != nil {
				t.Fatalf("login after error: %v", err)
			}
		})
	}
	t.Run("send before auth", func(t *testing.T) {
		c := dial(t, s)
		c.Send(1, []byte("x"), true)
		e := next[*codec.Error](t, c)
		if e.Code != codec.CodeNotAuthenticated {
			t.Fatalf("got %v", e.Code)
		}
	})
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	if !poll(10*time.Second, cond) {
		t.Fatal("condition not met within 10s")
	}
}

// poll calls cond every 5 ms until it holds or within has passed, and
// says whether it held.
func poll(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// A server closed right after it starts stops cleanly: Serve meeting the
// listener Close already shut returned EBADF or EEXIST (a reused fd).
func TestCloseRightAfterStart(t *testing.T) {
	for range 5 {
		_, stop := serve(t, testConfig(t))
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	}
}
