package server

import (
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
)

// pong waits for the PONG carrying nonce, returning the frames that came
// before it. A PING is answered on the event loop, so a PONG proves the
// loop was free; everything queued before the PONG on this connection
// arrives before it.
func pong(t *testing.T, c *client.Conn, nonce uint64, within time.Duration) []codec.Frame {
	t.Helper()
	if err := c.Ping(nonce); err != nil {
		t.Fatal(err)
	}
	timer := time.NewTimer(within)
	defer timer.Stop()
	var before []codec.Frame
	for {
		select {
		case f, ok := <-c.Events():
			if !ok {
				t.Fatalf("connection ended before PONG %d: %v", nonce, c.Err())
			}
			if p, ok := f.(*codec.Pong); ok && p.Nonce == nonce {
				return before
			}
			before = append(before, f)
		case <-timer.C:
			t.Fatalf("no PONG %d within %v: the event loop is blocked", nonce, within)
		}
	}
}

// TestGroupCommitOffEventLoop holds a group create's and a group change's
// fsync and checks that the creator's connection still answers PING and
// that another member can still send to the group meanwhile: the event
// loop never waits for a group's fsync, and the group's lock is not held
// across it. The answer comes once the write is durable.
func TestGroupCommitOffEventLoop(t *testing.T) {
	s := startServer(t, testConfig(t))
	alice, bob := register(t, s, "alice"), register(t, s, "bob")
	gid := createGroup(t, alice, "held", bob)

	held, release := make(chan struct{}, 1), make(chan struct{})
	s.groups.SetCommitHook(func() {
		held <- struct{}{}
		<-release
	})
	defer s.groups.SetCommitHook(nil)

	alice.WriteRaw((&codec.GroupCreate{Req: 7, Name: []byte("second"), Users: codec.Users(bob.Welcome.User)}).Append(nil))
	<-held
	for _, f := range pong(t, alice, 1, 3*time.Second) {
		if _, ok := f.(*codec.GroupInfo); ok {
			t.Fatal("GROUP_INFO before the create was durable")
		}
	}
	release <- struct{}{}
	if info := next[*codec.GroupInfo](t, alice); info.Req != 7 || len(info.Members) != 2 {
		t.Fatalf("create answer: %+v", info)
	}

	// A rename's fsync is held: bob's SEND to the group still goes through.
	alice.WriteRaw((&codec.GroupRename{Req: 8, Group: gid, Name: []byte("renamed")}).Append(nil))
	<-held
	bob.SendID(client.NewID(), codec.FlagGroup, gid, []byte("during the rename"), true)
	waitSent(t, bob, 3*time.Second)
	pong(t, alice, 2, 3*time.Second)
	release <- struct{}{}
	if ok := next[*codec.OK](t, alice); ok.Req != 8 {
		t.Fatalf("rename answer: %+v", ok)
	}
}

// waitSent waits for a SENT on c, acknowledging inbox entries meanwhile.
func waitSent(t *testing.T, c *client.Conn, within time.Duration) {
	t.Helper()
	timer := time.NewTimer(within)
	defer timer.Stop()
	for {
		select {
		case f := <-c.Events():
			switch f := f.(type) {
			case *codec.Sent:
				return
			case *codec.Error:
				t.Fatalf("send refused: %v %s", f.Code, f.Detail)
			case *codec.GroupEvent:
				c.Ack(f.Seq, true)
			case *codec.Deliver:
				c.Ack(f.Seq, true)
			}
		case <-timer.C:
			t.Fatal("no SENT while the group's change was committing: the group lock is held across the fsync")
		}
	}
}

// TestLogoutKickedWhenRevoked holds the commit lanes: LOGOUT is not
// answered (and PING is) until the revocation is durable; then KICKED
// reason 2 arrives and the connection closes.
func TestLogoutKickedWhenRevoked(t *testing.T) {
	s := startServer(t, testConfig(t))
	alice := register(t, s, "alice")
	held, release := make(chan struct{}, 1), make(chan struct{})
	hold := func() {
		held <- struct{}{}
		<-release
	}
	s.commits.hold.Store(&hold)
	alice.Logout()
	<-held
	for _, f := range pong(t, alice, 3, 3*time.Second) {
		if _, ok := f.(*codec.Kicked); ok {
			t.Fatal("KICKED before the token was revoked")
		}
	}
	s.commits.hold.Store(nil)
	close(release)
	if k := next[*codec.Kicked](t, alice); k.Reason != codec.KickLoggedOut {
		t.Fatalf("LOGOUT answered by KICKED %v", k.Reason)
	}
	select {
	case <-alice.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("connection still open after KICKED")
	}
}

// TestSubmitAfterClose: a login that finishes while the server closes
// submits its key check after the lanes stopped (seen: "send on closed
// channel" in client's tests); it is refused, not a panic.
func TestSubmitAfterClose(t *testing.T) {
	q := newCommits()
	ran := make(chan struct{})
	if !q.submit(1, func() { close(ran) }) {
		t.Fatal("refused before close")
	}
	q.close()
	<-ran // queued before close: run by close
	if q.submit(1, func() { t.Error("ran after close") }) {
		t.Fatal("taken after close")
	}
	q.barrier() // returns at once
}
