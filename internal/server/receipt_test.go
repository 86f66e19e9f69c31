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
