package server

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatd/chatd/codec"
)

// A WELCOME can reach the client before its login goroutine has finished
// (anything that flushes the connection sends it on: a push, a receipt).
// The client then resends its unacknowledged SENDs at once; each must be
// taken, not refused as "before WELCOME" with an ERROR that names no
// message (the client could not tell which to resend, and waited for
// their SENT until its next reconnect).
func TestSendRightAfterWelcomeIsTaken(t *testing.T) {
	cfg := testConfig(t)
	var hold atomic.Bool
	release := make(chan struct{})
	cfg.welcomed = func(c *Conn) {
		if hold.Load() {
			c.Flush() // as another producer's flush would
			<-release // the login goroutine is still running
		}
	}
	s := startServer(t, cfg)
	t.Cleanup(func() { close(release) }) // before the server stops
	register(t, s, "alice")
	bob := register(t, s, "bob").Welcome.User

	hold.Store(true)
	c := dial(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Login(ctx, "alice", "password-alice"); err != nil {
		t.Fatal(err)
	}
	id, err := c.Send(bob, []byte("hello"), true)
	if err != nil {
		t.Fatal(err)
	}
	if sent := next[*codec.Sent](t, c); sent.ID != id {
		t.Fatalf("SENT for %x, want %x", sent.ID, id)
	}
}

// The WELCOME goes out as soon as the login is decided, not after the
// rest of the login's work (in a cluster, round trips to the user's home
// to attach and read the backlog), which a loaded node took so long over
// that clients gave up waiting and logged in again.
func TestWelcomeBeforeTheLoginsWork(t *testing.T) {
	cfg := testConfig(t)
	var hold atomic.Bool
	release := make(chan struct{})
	cfg.welcomed = func(*Conn) {
		if hold.Load() {
			<-release // the attach and the drain wait behind this
		}
	}
	s := startServer(t, cfg)
	t.Cleanup(func() { close(release) })
	register(t, s, "alice")

	hold.Store(true)
	c := dial(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Login(ctx, "alice", "password-alice"); err != nil {
		t.Fatalf("no WELCOME while the login's work went on: %v", err)
	}
}
