package server

import (
	"testing"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
)

// expectError reads c's next ERROR (skipping what else arrives) and checks
// its code.
func expectError(t *testing.T, c *client.Conn, code codec.Code) *codec.Error {
	t.Helper()
	e := until[*codec.Error](t, c)
	if e.Code != code {
		t.Fatalf("ERROR %d (%s) %q, want %d", e.Code, e.Code, e.Detail, code)
	}
	return e
}

// skipTo returns c's next frame of type F, passing over SENTs and PONGs.
func skipTo[F codec.Frame](t *testing.T, c *client.Conn) F {
	t.Helper()
	for {
		f := next[codec.Frame](t, c)
		if want, ok := f.(F); ok {
			return want
		}
		switch f := f.(type) {
		case *codec.Sent:
		case *codec.GroupEvent:
			c.Ack(f.Seq, true)
		default:
			var zero F
			t.Fatalf("got %v %+v, want %T", f.Type(), f, zero)
		}
	}
}

// barrier proves that nothing stray was queued for to before now: from
// sends one more message, and it must be the next thing to receives
// (inbox entries arrive in seq order, and anything queued earlier has a
// lower seq).
func barrier(t *testing.T, from, to *client.Conn) {
	t.Helper()
	id, _ := from.Send(to.Welcome.User, []byte("barrier"), true)
	for {
		f := next[codec.Frame](t, to)
		switch f := f.(type) {
		case *codec.GroupEvent:
			to.Ack(f.Seq, true)
		case *codec.Deliver:
			if f.ID != id {
				t.Fatalf("unexpected delivery %q before the barrier", f.Body)
			}
			to.Ack(f.Seq, true)
			for { // and the barrier's delivered receipt, so from's inbox is clear
				if r, ok := next[codec.Frame](t, from).(*codec.Receipt); ok && r.IDs.At(0) == id {
					from.Ack(r.Seq, true)
					return
				}
			}
		case *codec.Receipt:
			t.Fatalf("stray receipt %+v before the barrier", f)
		case *codec.Sent, *codec.Error:
		default:
			t.Fatalf("unexpected %v before the barrier", f.Type())
		}
	}
}

// TestReadNeedsDelivery: a READ counts only for messages the reader was
// delivered and acknowledged, once each; anything else gets ERROR 36 and
// no receipt reaches the sender.
func TestReadNeedsDelivery(t *testing.T) {
	s := startServer(t, testConfig(t))
	alice, bob := register(t, s, "alice"), register(t, s, "bob")
	aliceID := alice.Welcome.User

	// Never sent at all.
	forged := client.NewID()
	bob.MarkRead(aliceID, 0, forged)
	if e := expectError(t, bob, codec.CodeNotDelivered); e.ID != forged {
		t.Fatalf("ERROR names %v, want %v", e.ID, forged)
	}
	barrier(t, bob, alice)

	// Sent and delivered, but read before it was acknowledged.
	id, _ := alice.Send(bob.Welcome.User, []byte("hi"), true)
	d := skipTo[*codec.Deliver](t, bob)
	bob.MarkRead(aliceID, 0, id)
	expectError(t, bob, codec.CodeNotDelivered)

	// Acknowledged, then read: one delivered and one read receipt.
	bob.Ack(d.Seq, true)
	if r := skipTo[*codec.Receipt](t, alice); r.Kind != codec.ReceiptDelivered || r.IDs.At(0) != id {
		t.Fatalf("receipt %+v", r)
	} else {
		alice.Ack(r.Seq, true)
	}
	bob.MarkRead(aliceID, 0, id)
	if r := skipTo[*codec.Receipt](t, alice); r.Kind != codec.ReceiptRead || r.IDs.At(0) != id || r.By != bob.Welcome.User {
		t.Fatalf("receipt %+v", r)
	} else {
		alice.Ack(r.Seq, true)
	}

	// Read twice: the second is refused and produces nothing.
	bob.MarkRead(aliceID, 0, id)
	expectError(t, bob, codec.CodeNotDelivered)
	barrier(t, bob, alice)

	// One real id among forged ones: the real one counts, the error names
	// a forged one.
	id2, _ := alice.Send(bob.Welcome.User, []byte("again"), true)
	d = skipTo[*codec.Deliver](t, bob)
	bob.Ack(d.Seq, true)
	for {
		r := skipTo[*codec.Receipt](t, alice)
		alice.Ack(r.Seq, true)
		if r.Kind == codec.ReceiptDelivered {
			break
		}
	}
	bob.MarkRead(aliceID, 0, forged, id2)
	if e := expectError(t, bob, codec.CodeNotDelivered); e.ID != forged {
		t.Fatalf("ERROR names %v, want %v", e.ID, forged)
	}
	if r := skipTo[*codec.Receipt](t, alice); r.Kind != codec.ReceiptRead || r.IDs.Len() != 1 || r.IDs.At(0) != id2 {
		t.Fatalf("receipt %+v", r)
	}

	// Naming oneself, or a user who does not exist.
	bob.MarkRead(bob.Welcome.User, 0, id)
	expectError(t, bob, codec.CodeSelfSend)
	bob.MarkRead(1<<40, 0, id)
	expectError(t, bob, codec.CodeUnknownRecipient)
}

// TestReadGroupIDIsNotAUser: a member who puts a group's id where the
// sender's user id belongs reaches nobody, even when a user has that
// numeric id; a non-member's READ for the group is refused.
func TestReadGroupIDIsNotAUser(t *testing.T) {
	s := startServer(t, testConfig(t))
	users := []*client.Conn{register(t, s, "alice"), register(t, s, "bob"), register(t, s, "carol"), register(t, s, "dave")}
	alice, bob, carol, dave := users[0], users[1], users[2], users[3]
	gid := createGroup(t, carol, "g", bob)
	var namesake *client.Conn
	for _, u := range users {
		if u.Welcome.User == gid && u != bob && u != carol {
			namesake = u
		}
	}
	if namesake == nil {
		t.Fatalf("group id %d is not the id of a user outside the group; the test needs one", gid)
	}

	id := client.NewID()
	carol.SendID(id, codec.FlagGroup, gid, []byte("hello group"), true)
	d := skipTo[*codec.Deliver](t, bob)
	bob.Ack(d.Seq, true)

	bob.MarkRead(gid, 0, id) // the group id in the sender's place
	expectError(t, bob, codec.CodeNotDelivered)
	barrier(t, bob, namesake)

	bob.MarkRead(carol.Welcome.User, 0, id) // right sender, group missing
	expectError(t, bob, codec.CodeNotDelivered)

	dave.MarkRead(carol.Welcome.User, gid, id) // not a member
	expectError(t, dave, codec.CodeNotMember)

	bob.MarkRead(carol.Welcome.User, gid, id)
	for {
		f := next[codec.Frame](t, carol)
		if r, ok := f.(*codec.Receipt); ok {
			carol.Ack(r.Seq, true)
			if r.Kind == codec.ReceiptRead {
				if r.Group != gid || r.By != bob.Welcome.User || r.IDs.At(0) != id {
					t.Fatalf("read receipt %+v", r)
				}
				break
			}
		}
	}
	_ = alice
}

// TestReadAfterRestart: what a reader acknowledged before a restart can
// still be reported read after it.
func TestReadAfterRestart(t *testing.T) {
	cfg := testConfig(t)
	s1, stop := serve(t, cfg)
	alice, bob := register(t, s1, "alice"), register(t, s1, "bob")
	id, _ := alice.Send(bob.Welcome.User, []byte("before"), true)
	d := skipTo[*codec.Deliver](t, bob)
	bob.Ack(d.Seq, true)
	skipTo[*codec.Receipt](t, alice) // the ack is durable once its receipt arrives
	alice.Close()
	bob.Close()
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	cfg.Addr = "127.0.0.1:0"
	s2 := startServer(t, cfg)
	a, b := login(t, s2, "alice"), login(t, s2, "bob")
	b.MarkRead(a.Welcome.User, 0, id)
	for {
		r := skipTo[*codec.Receipt](t, a)
		a.Ack(r.Seq, true)
		if r.Kind == codec.ReceiptRead && r.IDs.At(0) == id {
			return
		}
	}
}
