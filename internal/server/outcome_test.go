package server

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
)

// TestUnknownOutcomeResend is issue 12.3: a message whose batch was
// applied (and pushed to its online recipient) but whose fsync failed was
// answered "not stored" (ERROR 60), and the client package dropped it as
// failed although the recipient had it. Now the server says the outcome
// is unknown (ERROR 62), and the client resends with DUP until SENT: the
// sender's tick matches what the recipient saw, and the recipient sees
// the message once.
func TestUnknownOutcomeResend(t *testing.T) {
	cfg := testConfig(t)
	var fail atomic.Int32 // syncs still to fail
	cfg.syncFault = func() error {
		for {
			n := fail.Load()
			if n <= 0 {
				return nil
			}
			if fail.CompareAndSwap(n, n-1) {
				return errors.New("injected fsync failure")
			}
		}
	}
	s := startServer(t, cfg)
	alice := register(t, s, "alice")
	bob := register(t, s, "bob")
	bobID := bob.Welcome.User

	// The protocol: ERROR 62 for an applied, unsynced message; the resend
	// with DUP gets SENT and stores nothing twice.
	fail.Store(1)
	id, err := alice.Send(bobID, []byte("first"), true)
	if err != nil {
		t.Fatal(err)
	}
	e := next[*codec.Error](t, alice)
	if e.Code != codec.CodeUnknownOutcome || e.ID != id {
		t.Fatalf("got ERROR %d about %v, want %d (outcome unknown) about %v", e.Code, e.ID, codec.CodeUnknownOutcome, id)
	}
	if err := alice.SendID(id, codec.FlagDup, bobID, []byte("first"), true); err != nil {
		t.Fatal(err)
	}
	if sent := next[*codec.Sent](t, alice); sent.ID != id {
		t.Fatalf("SENT for %v, want %v", sent.ID, id)
	}

	// The client package: the application sees SENT and no ERROR, after
	// two failed syncs.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	carol, err := client.Connect(ctx, client.Options{
		Addr: s.Addr().String(), Name: "carol", Password: "password-carol", Register: true, Plaintext: true,
		Backoff: client.Backoff{Min: 10 * time.Millisecond, Max: 100 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer carol.Close()
	fail.Store(2)
	id2, _ := carol.Send(bobID, []byte("second"))
	select {
	case f := <-carol.Events():
		if sent, ok := f.(*codec.Sent); !ok || sent.ID != id2 {
			t.Fatalf("carol's first event is %#v, want SENT %v", f, id2)
		}
	case <-ctx.Done():
		t.Fatal("no outcome for carol's message")
	}
	if fail.Load() != 0 {
		t.Fatalf("%d injected failures unused: the message never met one", fail.Load())
	}
	if carol.Pending() != 0 {
		t.Fatalf("%d messages still pending", carol.Pending())
	}

	// Bob sees each message exactly once, then the marker.
	marker, _ := alice.Send(bobID, []byte("end"), true)
	count := map[codec.MsgID]int{}
	for {
		d := until[*codec.Deliver](t, bob)
		bob.Ack(d.Seq, true)
		if d.ID == marker {
			break
		}
		count[d.ID]++
	}
	if count[id] != 1 || count[id2] != 1 || len(count) != 2 {
		t.Fatalf("bob's deliveries by id: %v; want %v and %v once each", count, id, id2)
	}
}
