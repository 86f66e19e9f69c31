package server

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
)

// liveConfig is testConfig with live delivery on (offline's live.go).
func liveConfig(t *testing.T, wait time.Duration) Config {
	cfg := testConfig(t)
	cfg.LiveWait = wait
	return cfg
}

// livePair starts a server with live delivery (wait), registers alice
// and bob, and has alice send bob "hello".
func livePair(t *testing.T, wait time.Duration) (s *Server, alice, bob *client.Conn, id codec.MsgID) {
	t.Helper()
	s = startServer(t, liveConfig(t, wait))
	alice = register(t, s, "alice")
	bob = register(t, s, "bob")
	id, err := alice.Send(bob.Welcome.User, []byte("hello"), true)
	if err != nil {
		t.Fatal(err)
	}
	return s, alice, bob, id
}

// TestLiveDelivery: a message to an online recipient is delivered before
// it is stored; the recipient's ACK answers the sender with SENT and a
// delivered receipt (in one write, the receipt first), nothing reaches
// the inbox, and a READ of it still counts.
func TestLiveDelivery(t *testing.T) {
	s, alice, bob, id := livePair(t, time.Hour) // held until acknowledged
	aliceID, bobID := alice.Welcome.User, bob.Welcome.User
	d := next[*codec.Deliver](t, bob)
	if d.ID != id || d.From != aliceID || string(d.Body) != "hello" {
		t.Fatalf("DELIVER %+v", d)
	}
	if n, _ := s.inbox.Count(bobID); n != 0 {
		t.Fatalf("bob's inbox holds %d entries while the message is held live", n)
	}
	bob.Ack(d.Seq, true)
	r := next[*codec.Receipt](t, alice)
	if r.Kind != codec.ReceiptDelivered || r.By != bobID || r.IDs.Len() != 1 || r.IDs.At(0) != id || r.Seq == 0 {
		t.Fatalf("receipt %+v", r)
	}
	if sent := next[*codec.Sent](t, alice); sent.ID != id || sent.Time != d.Time {
		t.Fatalf("SENT %+v, want id %v time %d (the DELIVER's)", sent, id, d.Time)
	}
	alice.Ack(r.Seq, true)
	waitFor(t, func() bool { return s.inbox.Live().Acked == 1 })
	bob.MarkRead(aliceID, 0, id)
	rr := next[*codec.Receipt](t, alice)
	if rr.Kind != codec.ReceiptRead || rr.IDs.At(0) != id {
		t.Fatalf("read receipt %+v", rr)
	}
	alice.Ack(rr.Seq, true)
	waitFor(t, func() bool {
		a, _ := s.inbox.Count(aliceID)
		return a == 0
	})
	if st := s.inbox.Live(); st.Stored != 0 || st.Pushed != 2 {
		t.Fatalf("live stats %+v: want the message and its receipt pushed, none stored", st)
	}
}

// TestLiveSlowRecipient: a recipient that does not acknowledge within
// LiveWait gets the message again from its inbox, and the sender gets
// SENT once it is stored; its late ACK of the live copy changes nothing,
// and the delivered receipt comes once.
func TestLiveSlowRecipient(t *testing.T) {
	s, alice, bob, id := livePair(t, 30*time.Millisecond)
	first := next[*codec.Deliver](t, bob)
	sent := next[*codec.Sent](t, alice) // after the fsync of the stored copy
	again := next[*codec.Deliver](t, bob)
	if first.ID != id || again.ID != id || again.Seq <= first.Seq || sent.ID != id {
		t.Fatalf("live %+v, stored %+v, SENT %+v", first, again, sent)
	}
	bob.Ack(again.Seq, true) // covers the live copy too
	r := next[*codec.Receipt](t, alice)
	if r.Kind != codec.ReceiptDelivered || r.IDs.Len() != 1 || r.IDs.At(0) != id {
		t.Fatalf("receipt %+v", r)
	}
	alice.Ack(r.Seq, true)
	waitFor(t, func() bool {
		a, _ := s.inbox.Count(alice.Welcome.User)
		b, _ := s.inbox.Count(bob.Welcome.User)
		return a == 0 && b == 0
	})
	if st := s.inbox.Live(); st.Stored != 1 || st.Acked != 0 {
		t.Fatalf("live stats %+v", st)
	}
}

// TestLiveRecipientLeaves: a recipient that disconnects before
// acknowledging finds the message in its inbox when it comes back.
func TestLiveRecipientLeaves(t *testing.T) {
	s, alice, bob, id := livePair(t, 30*time.Millisecond)
	next[*codec.Deliver](t, bob)
	tok := bob.Welcome.Token
	bob.Close()
	next[*codec.Sent](t, alice)
	bob2, err := resumeWith(t, s, tok)
	if err != nil {
		t.Fatal(err)
	}
	defer bob2.Close()
	if d := next[*codec.Deliver](t, bob2); d.ID != id {
		t.Fatalf("after reconnecting: %+v", d)
	}
}

// TestLiveOrder: one sender's messages reach the recipient in the order
// sent, each at least once, whether they went live or were stored: the
// recipient's window is small and it acknowledges every few milliseconds
// but now and then pauses longer than LiveWait, so both paths interleave.
// After dropping copies by id every message is there exactly once, and
// every SENT came.
func TestLiveOrder(t *testing.T) {
	cfg := liveConfig(t, 30*time.Millisecond)
	cfg.Window = 4
	s := startServer(t, cfg)
	alice := register(t, s, "alice")
	bob := register(t, s, "bob")
	const n = 200
	sent := 0 // one SEND per tick: a chat, not a burst, so live delivery has its chance
	seen := map[string]bool{}
	want := 0 // the next body not seen yet must be this one
	sents := 0
	var last uint64 // highest seq delivered to bob
	var paused time.Time
	tick := time.NewTicker(3 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(60 * time.Second)
	for len(seen) < n || sents < n {
		select {
		case f := <-bob.Events():
			d, ok := f.(*codec.Deliver)
			if !ok {
				t.Fatalf("bob got %T", f)
			}
			if d.Seq <= last {
				t.Fatalf("seq %d after %d", d.Seq, last)
			}
			last = d.Seq
			b := string(d.Body)
			if !seen[b] {
				if b != fmt.Sprint(want) {
					t.Fatalf("first delivery of %q while %d was due", b, want)
				}
				seen[b] = true
				if want%50 == 25 {
					paused = time.Now().Add(80 * time.Millisecond) // past LiveWait: stored
				}
				want++
			}
		case <-tick.C:
			if last > 0 && time.Now().After(paused) {
				bob.Ack(last, true)
			}
			if sent < n {
				if _, err := alice.Send(bob.Welcome.User, []byte(fmt.Sprint(sent)), true); err != nil {
					t.Fatal(err)
				}
				sent++
			}
		case f := <-alice.Events():
			switch f.(type) {
			case *codec.Sent:
				sents++
			case *codec.Receipt:
			default:
				t.Fatalf("alice got %T %+v", f, f)
			}
		case <-deadline:
			t.Fatalf("%d of %d delivered, %d SENT", len(seen), n, sents)
		}
	}
	st := s.inbox.Live()
	t.Logf("live: %+v", st)
	if st.Acked == 0 || st.Stored == 0 {
		t.Fatalf("live stats %+v: the test meant both paths to run", st)
	}
}

// TestLiveDupIsStored: a SEND flagged DUP is checked against the dedup
// window, so it is stored even for an online recipient.
func TestLiveDupIsStored(t *testing.T) {
	s := startServer(t, liveConfig(t, time.Hour))
	alice := register(t, s, "alice")
	bob := register(t, s, "bob")
	id := codec.MsgID{1, 2, 3}
	if err := alice.SendID(id, codec.FlagDup, bob.Welcome.User, []byte("again"), true); err != nil {
		t.Fatal(err)
	}
	next[*codec.Sent](t, alice) // stored: no ACK needed
	if d := next[*codec.Deliver](t, bob); d.ID != id {
		t.Fatalf("%+v", d)
	}
	if n, _ := s.inbox.Count(bob.Welcome.User); n != 1 {
		t.Fatalf("bob's inbox holds %d entries, want the stored DUP", n)
	}
}

// TestLiveSentDelivered: a sender that asked for SENT_DELIVERED (OPTIONS)
// gets one frame for a message acknowledged live, carrying the DELIVER's
// time and the ACK's, and no RECEIPT entry: nothing is stored for it,
// nothing waits for its ACK. A message stored after the live wait is
// answered SENT as before, its RECEIPT an inbox entry. An unknown option
// bit is refused with ERROR 33 and changes nothing.
func TestLiveSentDelivered(t *testing.T) {
	s := startServer(t, liveConfig(t, time.Hour)) // held until acknowledged
	alice := register(t, s, "alice")
	bob := register(t, s, "bob")
	aliceID, bobID := alice.Welcome.User, bob.Welcome.User
	ctx := context.Background()
	var e *codec.Error
	if err := alice.SetOptions(ctx, codec.OptionSentDelivered<<1); !errors.As(err, &e) || e.Code != codec.CodeInvalidFlags {
		t.Fatalf("OPTIONS with an unknown bit: %v, want ERROR 33", err)
	}
	if err := alice.SetOptions(ctx, codec.OptionSentDelivered); err != nil {
		t.Fatal(err)
	}
	id, err := alice.Send(bobID, []byte("hello"), true)
	if err != nil {
		t.Fatal(err)
	}
	before := uint64(time.Now().UnixMilli())
	d := next[*codec.Deliver](t, bob)
	bob.Ack(d.Seq, true)
	sd := next[*codec.SentDelivered](t, alice) // next fails on any other frame first
	if sd.ID != id || sd.Time != d.Time || sd.Delivered < before || sd.Delivered > uint64(time.Now().UnixMilli()) {
		t.Fatalf("SENT_DELIVERED %+v, want id %v time %d (the DELIVER's) and the ACK's time", sd, id, d.Time)
	}
	waitFor(t, func() bool { return s.inbox.Live().Acked == 1 })
	if n, _ := s.inbox.Count(aliceID); n != 0 {
		t.Fatalf("alice's inbox holds %d entries: the receipt went in SENT_DELIVERED", n)
	}
	if st := s.inbox.Live(); st.Pushed != 1 || st.Stored != 0 {
		t.Fatalf("live stats %+v: want the message alone pushed, nothing stored", st)
	}
	if n := s.counters.sentDelivered.Load(); n != 1 {
		t.Fatalf("chatd_sent_delivered_total %d, want 1", n)
	}
	// A READ still counts: the read log knows the message.
	bob.MarkRead(aliceID, 0, id)
	if rr := next[*codec.Receipt](t, alice); rr.Kind != codec.ReceiptRead || rr.IDs.At(0) != id {
		t.Fatalf("read receipt %+v", rr)
	}
}

// TestSentDeliveredOnlyLive: with SENT_DELIVERED asked, a message its
// recipient does not acknowledge within the live wait is stored and
// answered SENT after the fsync; its delivered receipt is an inbox entry.
func TestSentDeliveredOnlyLive(t *testing.T) {
	s := startServer(t, liveConfig(t, 30*time.Millisecond))
	alice := register(t, s, "alice")
	bob := register(t, s, "bob")
	if err := alice.SetOptions(context.Background(), codec.OptionSentDelivered); err != nil {
		t.Fatal(err)
	}
	id, err := alice.Send(bob.Welcome.User, []byte("hello"), true)
	if err != nil {
		t.Fatal(err)
	}
	next[*codec.Deliver](t, bob) // the live copy, not acknowledged in time
	if sent := next[*codec.Sent](t, alice); sent.ID != id {
		t.Fatalf("SENT %+v", sent)
	}
	again := next[*codec.Deliver](t, bob)
	bob.Ack(again.Seq, true)
	r := next[*codec.Receipt](t, alice)
	if r.Kind != codec.ReceiptDelivered || r.IDs.At(0) != id || r.Seq == 0 {
		t.Fatalf("receipt %+v", r)
	}
	alice.Ack(r.Seq, true)
	waitFor(t, func() bool { n, _ := s.inbox.Count(alice.Welcome.User); return n == 0 })
}
