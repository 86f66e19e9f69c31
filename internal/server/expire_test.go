package server

import (
	"context"
	"testing"
	"time"

	"github.com/chatd/chatd/codec"
)

// TestTTLEnforcedAtDelivery: messages to an offline user outlive a short
// TTL. The sender gets an expired receipt for each (the group one naming
// the group and the member), and the user, back online, is never
// delivered them: the first DELIVER is a message sent after.
func TestTTLEnforcedAtDelivery(t *testing.T) {
	cfg := testConfig(t)
	cfg.TTL = time.Second
	s := startServer(t, cfg)
	alice := register(t, s, "alice")
	bob := register(t, s, "bob")
	bobID, tok := bob.Welcome.User, bob.Welcome.Token
	bob.Close()
	waitFor(t, func() bool { _, on := s.sessions.Lookup(bobID); return !on })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	g, err := alice.CreateGroup(ctx, "pair", bobID)
	if err != nil {
		t.Fatal(err)
	}
	direct, _ := alice.Send(bobID, []byte("soon stale"), true)
	next[*codec.Sent](t, alice)
	grouped := codec.MsgID{0xee, 1}
	alice.SendID(grouped, codec.FlagGroup, g.Group, []byte("stale in the group"), true)
	next[*codec.Sent](t, alice)

	want := map[uint64]codec.MsgID{0: direct, g.Group: grouped}
	for len(want) > 0 {
		r := next[*codec.Receipt](t, alice)
		id, ok := want[r.Group]
		if r.Kind != codec.ReceiptExpired || !ok || r.By != bobID || r.IDs.Len() != 1 || r.IDs.At(0) != id {
			t.Fatalf("receipt %+v", r)
		}
		delete(want, r.Group)
		alice.Ack(r.Seq, true)
	}

	back := dial(t, s)
	if _, err := back.Resume(ctx, tok); err != nil {
		t.Fatal(err)
	}
	fresh, _ := alice.Send(bobID, []byte("fresh"), true)
	if d := next[*codec.Deliver](t, back); d.ID != fresh {
		t.Fatalf("delivered %q after its TTL", d.Body)
	}
}
