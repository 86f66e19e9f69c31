package server

import (
	"context"
	"testing"
	"time"

	"github.com/chatd/chatd/codec"
)

// TestReceiptsReachOfflineSender: alice sends and leaves; bob receives,
// acknowledges and reads; alice comes back and finds both ticks waiting.
func TestReceiptsReachOfflineSender(t *testing.T) {
	s := startServer(t, testConfig(t))
	alice := register(t, s, "alice")
	bob := register(t, s, "bob")
	aliceID, tok := alice.Welcome.User, alice.Welcome.Token
	id, _ := alice.Send(bob.Welcome.User, []byte("are you there?"), true)
	next[*codec.Sent](t, alice)
	alice.Close()
	waitFor(t, func() bool { _, on := s.sessions.Lookup(aliceID); return !on })

	d := next[*codec.Deliver](t, bob)
	bob.Ack(d.Seq, true)
	bob.MarkRead(aliceID, 0, d.ID)

	back := dial(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := back.Resume(ctx, tok); err != nil {
		t.Fatal(err)
	}
	kinds := map[codec.ReceiptKind]bool{}
	for len(kinds) < 2 {
		r := next[*codec.Receipt](t, back)
		if r.By != bob.Welcome.User || r.IDs.Len() != 1 || r.IDs.At(0) != id {
			t.Fatalf("receipt %+v", r)
		}
		kinds[r.Kind] = true
		back.Ack(r.Seq, true)
	}
}

func TestFullInboxRefusesWithCode(t *testing.T) {
	cfg := testConfig(t)
	cfg.Quota = 3
	s := startServer(t, cfg)
	alice := register(t, s, "alice")
	bob := register(t, s, "bob")
	bob.Close()
	var ids []codec.MsgID
	for i := 0; i < 4; i++ {
		id, _ := alice.Send(bob.Welcome.User, []byte("x"), true)
		ids = append(ids, id)
	}
	sent, refused := 0, 0
	for sent+refused < 4 {
		f := <-alice.Events()
		switch f := f.(type) {
		case *codec.Sent:
			sent++
		case *codec.Error:
			if f.Code != codec.CodeInboxFull || f.ID != ids[3] {
				t.Fatalf("error %v for %v", f.Code, f.ID)
			}
			refused++
		}
	}
	if sent != 3 || refused != 1 {
		t.Fatalf("sent %d refused %d", sent, refused)
	}
}

// TestReceiptRidesWithNextSent is issue 14.1: a delivered receipt for an
// online sender waits (up to ReceiptDelay) for the sender's next frame and
// shares its write, instead of costing a write(2) of its own. With the
// delay at an hour, the receipt must not come alone, and must come, in
// order, with the SENT of alice's next message.
func TestReceiptRidesWithNextSent(t *testing.T) {
	cfg := testConfig(t)
	cfg.ReceiptDelay = time.Hour
	s := startServer(t, cfg)
	alice := register(t, s, "alice")
	bob := register(t, s, "bob")
	id1, _ := alice.Send(bob.Welcome.User, []byte("one"), true)
	next[*codec.Sent](t, alice)
	d := next[*codec.Deliver](t, bob)
	bob.Ack(d.Seq, true)
	// The receipt is queued for alice once bob's ACK is durable; give it
	// time to be queued, and check that it does not go out by itself.
	select {
	case f := <-alice.Events():
		t.Fatalf("got %v %+v by itself: the receipt did not wait for alice's next frame", f.Type(), f)
	case <-time.After(300 * time.Millisecond):
	}
	id2, _ := alice.Send(bob.Welcome.User, []byte("two"), true)
	r := next[*codec.Receipt](t, alice)
	if r.Kind != codec.ReceiptDelivered || r.IDs.Len() != 1 || r.IDs.At(0) != id1 {
		t.Fatalf("receipt %+v", r)
	}
	if sent := next[*codec.Sent](t, alice); sent.ID != id2 {
		t.Fatalf("SENT for %x, want %x", sent.ID, id2)
	}
}
