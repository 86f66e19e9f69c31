package server

import (
	"context"
	"errors"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
)

func ctx10(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// wantCode fails unless err is an ERROR with code.
func wantCode(t *testing.T, what string, err error, code codec.Code) {
	t.Helper()
	var e *codec.Error
	if !errors.As(err, &e) || e.Code != code {
		t.Fatalf("%s: got %v, want ERROR %d (%v)", what, err, code, code)
	}
}

// pingPong makes sure the server has handled every frame c sent before:
// frames of one connection are handled in order.
func pingPong(t *testing.T, c *client.Conn, nonce uint64) {
	t.Helper()
	if err := c.Ping(nonce); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(10 * time.Second)
	for {
		select {
		case f, ok := <-c.Events():
			if !ok {
				t.Fatalf("connection ended: %v", c.Err())
			}
			if p, ok := f.(*codec.Pong); ok && p.Nonce == nonce {
				return
			}
			t.Fatalf("got %v %+v before PONG", f.Type(), f)
		case <-deadline:
			t.Fatal("no PONG within 10s")
		}
	}
}

// TestBlock: bob blocks alice. Her SEND is answered SENT but bob never
// gets it nor does any receipt reach her; her TYPING is dropped; she sees
// bob's presence hidden; her group adds naming bob are refused; bob's own
// SEND to her is refused. Unblocking restores all of it, and the list
// survives a restart.
func TestBlock(t *testing.T) {
	cfg := testConfig(t)
	cfg.PresenceInterval = 20 * time.Millisecond
	s, stop := serve(t, cfg)
	alice := register(t, s, "alice")
	bob := register(t, s, "bob")
	carol := register(t, s, "carol")
	aliceID, bobID, carolID := alice.Welcome.User, bob.Welcome.User, carol.Welcome.User
	ctx := ctx10(t)

	wantCode(t, "block yourself", bob.Block(ctx, bobID), codec.CodeSelfSend)
	wantCode(t, "block no one", bob.Block(ctx, 999), codec.CodeUnknownUser)
	if err := bob.Block(ctx, aliceID); err != nil {
		t.Fatal(err)
	}
	if err := bob.Block(ctx, aliceID); err != nil { // twice: still OK
		t.Fatal(err)
	}
	if got, err := bob.List(ctx, codec.ListBlocked); err != nil || !slices.Equal(got, []uint64{aliceID}) {
		t.Fatalf("blocked list: %v %v", got, err)
	}

	// Alice's SEND: SENT, stored nowhere.
	hidden, err := alice.Send(bobID, []byte("you there?"), true)
	if err != nil {
		t.Fatal(err)
	}
	if f := next[*codec.Sent](t, alice); f.ID != hidden {
		t.Fatalf("SENT for %v, want %v", f.ID, hidden)
	}
	if n, _ := s.inbox.Count(bobID); n != 0 {
		t.Fatalf("bob's inbox holds %d entries of a blocked sender", n)
	}
	// Bob's SEND to alice: refused, unblock first.
	id, _ := bob.Send(aliceID, []byte("hi"), true)
	if e := next[*codec.Error](t, bob); e.Code != codec.CodeYouBlocked || e.ID != id {
		t.Fatalf("blocker's SEND: %+v", e)
	}
	// Typing: dropped both ways (the PINGs prove they were handled).
	alice.Typing(bobID, true)
	pingPong(t, alice, 1)
	bob.Typing(aliceID, true)
	pingPong(t, bob, 2)

	// Presence: alice sees bob hidden; carol sees him online.
	alice.Subscribe(bobID)
	if p := next[*codec.Presence](t, alice); p.User != bobID || p.State != codec.PresenceHidden || p.LastSeen != 0 {
		t.Fatalf("blocked watcher sees %+v", p)
	}
	carol.Subscribe(bobID)
	if p := next[*codec.Presence](t, carol); p.State != codec.PresenceOnline {
		t.Fatalf("other watcher sees %+v", p)
	}

	// Groups: alice may neither create one with bob nor add him.
	_, err = alice.CreateGroup(ctx, "trap", bobID, carolID)
	wantCode(t, "create with a blocker", err, codec.CodeAddRefused)
	if gs, _ := alice.Groups(ctx); len(gs) != 0 {
		t.Fatalf("a refused create made groups %v", gs)
	}
	g, err := alice.CreateGroup(ctx, "team", carolID)
	if err != nil {
		t.Fatal(err)
	}
	until[*codec.GroupEvent](t, alice)
	until[*codec.GroupEvent](t, carol)
	wantCode(t, "add a blocker", alice.AddMembers(ctx, g.Group, bobID), codec.CodeAddRefused)

	// Unblock: everything flows again, and only the new message arrives.
	if err := bob.Unblock(ctx, aliceID); err != nil {
		t.Fatal(err)
	}
	if p := next[*codec.Presence](t, alice); p.State != codec.PresenceOnline {
		t.Fatalf("after unblock alice sees %+v", p)
	}
	alice.Typing(bobID, true)
	if f := next[*codec.IsTyping](t, bob); f.From != aliceID {
		t.Fatalf("typing after unblock: %+v", f)
	}
	visible, _ := alice.Send(bobID, []byte("hello again"), true)
	next[*codec.Sent](t, alice)
	d := next[*codec.Deliver](t, bob)
	if d.ID != visible {
		t.Fatalf("bob got %q (%v), want the message sent after the unblock", d.Body, d.ID)
	}
	bob.Ack(d.Seq, true)
	bob.MarkRead(aliceID, 0, visible)
	for _, kind := range []codec.ReceiptKind{codec.ReceiptDelivered, codec.ReceiptRead} {
		r := next[*codec.Receipt](t, alice)
		if r.Kind != kind || r.IDs.Len() != 1 || r.IDs.At(0) != visible {
			t.Fatalf("receipt %+v, want %v for the visible message only", r, kind)
		}
		alice.Ack(r.Seq, true)
	}
	if err := alice.AddMembers(ctx, g.Group, bobID); err != nil {
		t.Fatalf("add after unblock: %v", err)
	}
	// bob's news of it comes through his inbox, in its own time: taken
	// here, or it can arrive in the middle of a ping below.
	if ev := until[*codec.GroupEvent](t, bob); ev.Kind != codec.GroupAdded {
		t.Fatalf("bob got %+v, want his add", ev)
	} else {
		bob.Ack(ev.Seq, true)
	}

	// A read receipt for a message stored before a block is withheld.
	early, _ := alice.Send(bobID, []byte("before the block"), true)
	next[*codec.Sent](t, alice)
	d = until[*codec.Deliver](t, bob)
	bob.Ack(d.Seq, true)
	if r := until[*codec.Receipt](t, alice); r.Kind != codec.ReceiptDelivered || r.IDs.At(0) != early {
		t.Fatalf("receipt %+v", r)
	} else {
		alice.Ack(r.Seq, true)
	}
	if err := bob.Block(ctx, aliceID); err != nil {
		t.Fatal(err)
	}
	bob.MarkRead(aliceID, 0, early)
	pingPong(t, bob, 3)

	// The block survives a restart.
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	s = startServer(t, cfg)
	alice = login(t, s, "alice")
	login(t, s, "bob") // online again, as before the restart
	hidden, _ = alice.Send(bobID, []byte("after restart"), true)
	if f := next[*codec.Sent](t, alice); f.ID != hidden {
		t.Fatalf("SENT for %v", f.ID)
	}
	if n, _ := s.inbox.Count(bobID); n != 0 {
		t.Fatalf("bob's inbox holds %d entries of a sender blocked before the restart", n)
	}
	// Neither a read receipt for the early message nor anything else
	// reached alice: the next frame she gets is this PONG.
	pingPong(t, alice, 4)
}

// TestGroupAddsFromContacts: with GROUP_ADDS contacts only, a user who
// is not a contact cannot add bob; once a contact, they can.
func TestGroupAddsFromContacts(t *testing.T) {
	s := startServer(t, testConfig(t))
	bob := register(t, s, "bob")
	carol := register(t, s, "carol")
	bobID, carolID := bob.Welcome.User, carol.Welcome.User
	ctx := ctx10(t)
	if err := bob.SetGroupAdds(ctx, codec.AddsFromContacts); err != nil {
		t.Fatal(err)
	}
	_, err := carol.CreateGroup(ctx, "club", bobID)
	wantCode(t, "create by a non-contact", err, codec.CodeAddRefused)
	if err := bob.SetContact(ctx, carolID, true); err != nil {
		t.Fatal(err)
	}
	if got, err := bob.List(ctx, codec.ListContacts); err != nil || !slices.Equal(got, []uint64{carolID}) {
		t.Fatalf("contacts: %v %v", got, err)
	}
	if _, err := carol.CreateGroup(ctx, "club", bobID); err != nil {
		t.Fatalf("create by a contact: %v", err)
	}
	if err := bob.SetContact(ctx, carolID, false); err != nil {
		t.Fatal(err)
	}
	_, err = carol.CreateGroup(ctx, "club2", bobID)
	wantCode(t, "create by a former contact", err, codec.CodeAddRefused)
	if err := bob.SetGroupAdds(ctx, codec.AddsFromEveryone); err != nil {
		t.Fatal(err)
	}
	if _, err := carol.CreateGroup(ctx, "club3", bobID); err != nil {
		t.Fatalf("create with adds from everyone: %v", err)
	}
}

// TestBlockSurvivesKill: a BLOCK answered OK holds after kill -9.
func TestBlockSurvivesKill(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts and kills server processes")
	}
	dir := t.TempDir()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	connect := func(name string, register bool) *client.Conn {
		t.Helper()
		c, err := client.Dial(ctx, addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		do := c.Login
		if register {
			do = c.Register
		}
		if _, err := do(ctx, name, "password-"+name); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return c
	}
	srv := startChild(t, addr, dir)
	alice, bob := connect("alice", true), connect("bob", true)
	aliceID, bobID := alice.Welcome.User, bob.Welcome.User
	if err := bob.Block(ctx, aliceID); err != nil {
		t.Fatal(err)
	}
	srv.kill9() // right after the OK
	srv = startChild(t, addr, dir)
	defer srv.kill9()
	alice, bob = connect("alice", false), connect("bob", false)
	if got, err := bob.List(ctx, codec.ListBlocked); err != nil || !slices.Equal(got, []uint64{aliceID}) {
		t.Fatalf("blocked after kill -9: %v %v", got, err)
	}
	hidden, _ := alice.Send(bobID, []byte("after the kill"), true)
	if f := until[*codec.Sent](t, alice); f.ID != hidden {
		t.Fatalf("SENT for %v", f.ID)
	}
	pingPong(t, bob, 1) // nothing came to bob
}
