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
	"github.com/chatd/chatd/internal/prekey"
	"github.com/chatd/chatd/internal/push"
)

// TestAccountDelete: bob deletes his account. A stop in the middle (after
// the group and inbox steps) leaves the deletion to the next start, which
// finishes it: bob's groups tell their members he left (a last admin
// hands the role on first), the message waiting in his inbox comes back
// to its sender as expired, his tokens, presence and lists are gone, he
// cannot log in nor be sent to, and his name is free again only after
// the hold. Running the steps again changes nothing.
func TestAccountDelete(t *testing.T) {
	cfg := testConfig(t)
	cfg.NameHold = 1500 * time.Millisecond
	crashed := make(chan struct{})
	first := cfg
	first.deleteStep = func(step string) error {
		if step == "presence" {
			close(crashed)
			return errClosing // stops as a crash would, the mark in place
		}
		return nil
	}
	s, stop := serve(t, first)
	alice := register(t, s, "alice")
	bob := register(t, s, "bob")
	carol := register(t, s, "carol")
	aliceID, bobID, carolID := alice.Welcome.User, bob.Welcome.User, carol.Welcome.User
	bobToken := bob.Welcome.Token
	ctx := ctx10(t)

	g, err := bob.CreateGroup(ctx, "team", aliceID, carolID)
	if err != nil {
		t.Fatal(err)
	}
	until[*codec.GroupEvent](t, alice)
	until[*codec.GroupEvent](t, carol)
	if err := bob.Block(ctx, carolID); err != nil {
		t.Fatal(err)
	}
	waiting, _ := alice.Send(bobID, []byte("unread"), true)
	next[*codec.Sent](t, alice)
	until[*codec.Deliver](t, bob) // delivered, never acknowledged
	fromBob, _ := bob.Send(aliceID, []byte("from bob"), true)
	until[*codec.Sent](t, bob)
	d := until[*codec.Deliver](t, alice)
	alice.Ack(d.Seq, true)

	uploadKeys(t, bob, 5, 1) // end-to-end prekeys go with the account, and push subscriptions
	if err := s.PushSubscriptions().Put(bobID, push.Subscription{Device: 1, Endpoint: "https://push.example/bob", P256dh: make([]byte, 65), Auth: make([]byte, 16)}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "wrong password", bob.DeleteAccount(ctx, "not the password"), codec.CodeWrongPassword)
	if err := bob.DeleteAccount(ctx, "password-bob"); err != nil {
		t.Fatal(err)
	}
	if k := until[*codec.Kicked](t, bob); k.Reason != codec.KickDeleted {
		t.Fatalf("kicked: %v", k.Reason)
	}
	<-crashed
	// The group steps ran: alice, the member with the lowest id, was made
	// admin, then bob left; and the message bob never acknowledged came
	// back expired. Group events and receipts come from different lanes,
	// in either order.
	var events []codec.GroupEventKind
	var expired *codec.Receipt
	for len(events) < 2 || expired == nil {
		switch f := recv[codec.Frame](t, alice, time.After(10*time.Second)).(type) {
		case *codec.GroupEvent:
			if f.Group != g.Group || f.Actor != bobID {
				t.Fatalf("event %+v", f)
			}
			events = append(events, f.Kind)
			alice.Ack(f.Seq, true)
		case *codec.Receipt:
			if expired != nil {
				t.Fatalf("a second receipt %+v", f)
			}
			expired = f
			alice.Ack(f.Seq, true)
		default:
			t.Fatalf("got %v %+v", f.Type(), f)
		}
	}
	if !slices.Equal(events, []codec.GroupEventKind{codec.GroupPromoted, codec.GroupLeft}) {
		t.Fatalf("events %v, want promoted then left", events)
	}
	if expired.Kind != codec.ReceiptExpired || expired.IDs.Len() != 1 || expired.IDs.At(0) != waiting {
		t.Fatalf("receipt %+v, want expired for the message bob never acknowledged", expired)
	}
	if done, _ := s.accounts.DeletionDone(bobID); done {
		t.Fatal("the deletion finished though a step stopped it")
	}
	// Already gone for everyone: the mark came first.
	id, _ := alice.Send(bobID, []byte("still there?"), true)
	if e := next[*codec.Error](t, alice); e.Code != codec.CodeUnknownRecipient || e.ID != id {
		t.Fatalf("SEND to a deleted account: %+v", e)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// The next start finishes it.
	s = startServer(t, cfg)
	waitFor(t, func() bool { done, _ := s.accounts.DeletionDone(bobID); return done })
	finished := time.Now()
	if gs, _ := s.groups.List(bobID); len(gs) != 0 {
		t.Fatalf("bob still in groups %v", gs)
	}
	if n, _ := s.inbox.Count(bobID); n != 0 {
		t.Fatalf("bob's inbox holds %d entries", n)
	}
	if last, priv := s.presence.Read(bobID); last != 0 || priv != 0 {
		t.Fatalf("bob's presence record left: %d %v", last, priv)
	}
	if l := s.blocks.List(bobID, codec.ListBlocked); len(l) != 0 {
		t.Fatalf("bob's block list left: %v", l)
	}
	if _, err := s.prekeys.Count(bobID, 1); !errors.Is(err, prekey.ErrNoKeys) {
		t.Fatalf("bob's prekeys left: %v", err)
	}
	if s.PushSubscriptions().Has(bobID) {
		t.Fatal("bob's push subscription left")
	}
	// Again: nothing more happens, nothing fails.
	if err := s.deleteSteps(bobID); err != nil {
		t.Fatalf("deletion run again: %v", err)
	}
	gr, err := s.groups.Get(g.Group)
	if err != nil {
		t.Fatal(err)
	}
	gr.Mu.RLock()
	members := gr.Members()
	gr.Mu.RUnlock()
	if !slices.Equal(members, []codec.Member{{User: aliceID, Role: codec.RoleAdmin}, {User: carolID, Role: codec.RoleMember}}) &&
		!slices.Equal(members, []codec.Member{{User: carolID, Role: codec.RoleMember}, {User: aliceID, Role: codec.RoleAdmin}}) {
		t.Fatalf("members after the deletion: %+v", members)
	}

	// Alice reads bob's message: no receipt goes anywhere, and no error.
	alice = login(t, s, "alice")
	if err := alice.MarkRead(bobID, 0, fromBob); err != nil {
		t.Fatal(err)
	}
	pingPong(t, alice, 1)

	c := dial(t, s)
	_, err = c.Login(ctx, "bob", "password-bob")
	wantCode(t, "login", err, codec.CodeUnknownUser)
	_, err = c.Resume(ctx, bobToken)
	wantCode(t, "resume", err, codec.CodeInvalidToken)
	_, err = c.Register(ctx, "bob", "password-bob2")
	wantCode(t, "register the held name", err, codec.CodeNameTaken)
	// The name comes back once the hold has passed, as a new account.
	for {
		w, err := c.Register(ctx, "bob", "password-bob2")
		if err == nil {
			if time.Since(finished) < cfg.NameHold-100*time.Millisecond {
				t.Fatalf("name free again %v after the deletion; the hold is %v", time.Since(finished), cfg.NameHold)
			}
			if w.User == bobID {
				t.Fatal("the new bob got the deleted account's id")
			}
			break
		}
		wantCode(t, "register during the hold", err, codec.CodeNameTaken)
		if time.Since(finished) > 10*time.Second {
			t.Fatal("name still held 10s after the deletion")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAccountDeleteKilled: the server is killed (SIGKILL) while an
// account deletion it answered OK hangs in its first step. The restarted
// server finishes it: the other member sees bob leave the group, the
// message bob never acknowledged comes back expired, and once the name
// hold has passed the name can be registered again, which needs the last
// step to have run.
func TestAccountDeleteKilled(t *testing.T) {
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
	const hold = "CHATD_TEST_NAME_HOLD=1s"
	srv := startChild(t, addr, dir, "CHATD_TEST_DELETE_HALT=groups", hold)
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
	alice, bob := connect("alice", true), connect("bob", true)
	aliceID, bobID := alice.Welcome.User, bob.Welcome.User
	g, err := bob.CreateGroup(ctx, "team", aliceID)
	if err != nil {
		t.Fatal(err)
	}
	waiting, _ := alice.Send(bobID, []byte("unread"), true)
	until[*codec.Sent](t, alice)
	until[*codec.Deliver](t, bob)
	if err := bob.DeleteAccount(ctx, "password-bob"); err != nil {
		t.Fatal(err)
	}
	if k := until[*codec.Kicked](t, bob); k.Reason != codec.KickDeleted {
		t.Fatalf("kicked: %v", k.Reason)
	}
	srv.kill9()
	alice.Close()

	srv = startChild(t, addr, dir, hold)
	defer srv.kill9()
	alice = connect("alice", false)
	left, expired := false, false
	for !left || !expired {
		switch f := recv[codec.Frame](t, alice, time.After(10*time.Second)).(type) {
		case *codec.GroupEvent:
			alice.Ack(f.Seq, true)
			switch {
			case f.Kind == codec.GroupCreated:
				// again: its acknowledgement may not have been stored before the kill
			case f.Group != g.Group || f.Actor != bobID:
				t.Fatalf("event %+v, want one by bob", f)
			case f.Kind == codec.GroupPromoted: // bob was the last admin: alice first
			case f.Kind == codec.GroupLeft:
				left = true
			default:
				t.Fatalf("event %+v", f)
			}
		case *codec.Receipt:
			alice.Ack(f.Seq, true)
			if f.Kind != codec.ReceiptExpired || f.IDs.At(0) != waiting {
				t.Fatalf("receipt %+v, want expired", f)
			}
			expired = true
		}
	}
	c, err := client.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !poll(15*time.Second, func() bool {
		_, err := c.Register(ctx, "bob", "password-bob2")
		return err == nil
	}) {
		t.Fatal("the name was not free 15s after the restart: the deletion did not finish")
	}
}
