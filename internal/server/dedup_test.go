package server

import (
	"context"
	"testing"
	"time"

	"github.com/chatd/chatd/codec"
)

// TestDedupRule: within the dedup window a (sender, id) seen before gets
// the original SENT, DUP flag or not, and is delivered once; the same
// (sender, id) to another recipient or with another body is refused with
// ERROR 37. Direct and group messages alike.
func TestDedupRule(t *testing.T) {
	s := startServer(t, testConfig(t))
	alice := register(t, s, "alice")
	bob := register(t, s, "bob")
	carol := register(t, s, "carol")
	bobID, carolID := bob.Welcome.User, carol.Welcome.User
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	g, err := alice.CreateGroup(ctx, "three", bobID, carolID)
	if err != nil {
		t.Fatal(err)
	}
	send := func(id codec.MsgID, flags codec.SendFlags, to uint64, body string) {
		t.Helper()
		if err := alice.SendID(id, flags, to, []byte(body), true); err != nil {
			t.Fatal(err)
		}
	}
	refused := func(id codec.MsgID, what string) {
		t.Helper()
		if e := next[*codec.Error](t, alice); e.Code != codec.CodeDuplicateID || e.ID != id {
			t.Fatalf("%s: got ERROR %v for %v, want %v", what, e.Code, e.ID, codec.CodeDuplicateID)
		}
	}
	for _, c := range []struct {
		name       string
		to, other  uint64
		flag       codec.SendFlags
		id         codec.MsgID
		recipients []int // 0 bob, 1 carol
	}{
		{"direct", bobID, carolID, 0, codec.MsgID{0xd1}, []int{0}},
		{"group", g.Group, bobID, codec.FlagGroup, codec.MsgID{0xd2}, []int{0, 1}},
	} {
		send(c.id, c.flag, c.to, "hello")
		first := next[*codec.Sent](t, alice)
		send(c.id, c.flag, c.to, "hello") // resent without DUP
		if again := next[*codec.Sent](t, alice); again.ID != c.id || again.Time != first.Time {
			t.Fatalf("%s: resend without DUP got SENT %+v, want the original %+v", c.name, again, first)
		}
		send(c.id, c.flag|codec.FlagDup, c.to, "hello")
		if again := next[*codec.Sent](t, alice); again.Time != first.Time {
			t.Fatalf("%s: DUP resend got SENT at %d, want %d", c.name, again.Time, first.Time)
		}
		other := c.flag &^ codec.FlagGroup
		send(c.id, other|codec.FlagDup, c.other, "hello")
		refused(c.id, c.name+": DUP to another recipient")
		send(c.id, c.flag, c.to, "hello, edited")
		refused(c.id, c.name+": same recipient, another body")
		send(c.id, c.flag|codec.FlagDup, c.to, "hello, edited")
		refused(c.id, c.name+": DUP, another body")

		// Each recipient got it once: the next delivery is a later message.
		marker, _ := alice.Send(bobID, []byte("marker"), true)
		next[*codec.Sent](t, alice)
		for _, r := range c.recipients {
			conn := bob
			if r == 1 {
				conn = carol
			}
			d := next[*codec.Deliver](t, conn)
			if d.ID != c.id || string(d.Body) != "hello" {
				t.Fatalf("%s: delivered %q", c.name, d.Body)
			}
			conn.Ack(d.Seq, true)
		}
		if d := next[*codec.Deliver](t, bob); d.ID != marker {
			t.Fatalf("%s: delivered %q twice", c.name, d.Body)
		} else {
			bob.Ack(d.Seq, true)
		}
		// Delivered receipts for what was acknowledged.
		for range len(c.recipients) + 1 {
			r := next[*codec.Receipt](t, alice)
			alice.Ack(r.Seq, true)
		}
	}
}
