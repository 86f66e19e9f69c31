package offline

import (
	"sync"
	"testing"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/store"
)

// pusher is a fake session table for live delivery: it takes every entry
// for the users marked online and remembers them.
type pusher struct {
	mu     sync.Mutex
	online map[uint64]bool
	got    []Stored
}

func (p *pusher) push(e *Stored) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.online[e.To] {
		return false
	}
	p.got = append(p.got, *e)
	return true
}

func (p *pusher) pushed() []Stored {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Stored(nil), p.got...)
}

func (r *recorder) live() []*tmsg {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*tmsg(nil), r.liveAcked...)
}

func liveAcked(e Stored) Acked {
	a := e.Acked()
	a.Live = true
	return a
}

// TestLiveAckedNeverStored: a message pushed live and acknowledged in
// time leaves no entry and no dedup record; its sender is answered through
// LiveAcked, its delivered receipt goes live to the sender too, and the
// reader's read log lets a READ of it count.
func TestLiveAckedNeverStored(t *testing.T) {
	in, rec, db := open(t, t.TempDir(), Config{LiveWait: time.Hour})
	defer db.Close()
	defer in.Close()
	p := &pusher{online: map[uint64]bool{1: true, 2: true}}
	m := msg(1, 2, 7, "hi")
	m.Sender = 5
	id := m.ID
	if !in.Deliver(m, p.push) {
		t.Fatal("Deliver to an online, idle inbox refused")
	}
	got := p.pushed()
	if len(got) != 1 || got[0].To != 2 || got[0].Seq == 0 || string(got[0].Body) != "hi" {
		t.Fatalf("pushed %+v", got)
	}
	if err := in.AckEntries(2, []Acked{liveAcked(got[0])}, p.push); err != nil {
		t.Fatal(err)
	}
	if l := rec.live(); len(l) != 1 || l[0].ID != id || l[0].Seq != got[0].Seq || l[0].Time == 0 || l[0].Sender != 5 {
		t.Fatalf("LiveAcked got %+v", l)
	}
	if m.Sender != 0 || len(m.Body) != 0 {
		t.Fatalf("the message acknowledged live was not recycled: %+v", m)
	}
	got = p.pushed()
	if len(got) != 2 || got[1].To != 1 || got[1].Kind != KindReceipt || got[1].ReceiptKind != codec.ReceiptDelivered ||
		got[1].By != 2 || got[1].IDs.Len() != 1 || got[1].IDs.At(0) != id || got[1].Seq <= got[0].Seq {
		t.Fatalf("receipt pushed: %+v", got)
	}
	missing := make(chan codec.IDList, 1)
	in.MarkRead(2, 1, 0, codec.IDList(nil).AppendID(id), func(l codec.IDList, _ error) { missing <- l })
	if l := <-missing; l.Len() != 0 {
		t.Fatalf("READ of a message acknowledged live missed %d ids", l.Len())
	}
	// The read receipt is stored (the sender's push took the tick, not
	// this: nothing pushes stored entries in this test).
	rec.wait(t, 1)
	if n := countKeys(t, db, store.PrefixInbox); n != 1 {
		t.Fatalf("%d inbox entries; want 1, the read receipt (the message and its delivered receipt were never stored)", n)
	}
	if n := countKeys(t, db, store.PrefixDedup); n != 0 {
		t.Fatalf("%d dedup records for a message never stored", n)
	}
	if s := in.Live(); s.Pushed != 2 || s.Acked != 1 || s.Stored != 0 {
		t.Fatalf("live stats %+v", s)
	}
}

// TestLiveUnackedIsStored: without an ACK in time the message is stored
// with a new seq and answered through Durable; a late ACK of the live
// copy then changes nothing.
func TestLiveUnackedIsStored(t *testing.T) {
	in, rec, db := open(t, t.TempDir(), Config{LiveWait: 20 * time.Millisecond})
	defer db.Close()
	defer in.Close()
	p := &pusher{online: map[uint64]bool{2: true}}
	m := msg(1, 2, 7, "hi")
	if !in.Deliver(m, p.push) {
		t.Fatal("Deliver refused")
	}
	live := p.pushed()[0]
	o := rec.wait(t, 1)[0]
	if o.msg != m || o.Err != nil || o.Seq <= live.Seq {
		t.Fatalf("stored after the wait: %+v (live seq %d)", o, live.Seq)
	}
	if e := entries(t, in, 2); len(e) != 1 || e[0].ID != m.ID || e[0].Seq != o.Seq {
		t.Fatalf("inbox %+v", e)
	}
	if err := in.AckEntries(2, []Acked{liveAcked(live)}, p.push); err != nil {
		t.Fatal(err)
	}
	if l := rec.live(); len(l) != 0 {
		t.Fatalf("LiveAcked for a message already stored: %v", l)
	}
	if s := in.Live(); s.Stored != 1 || s.Acked != 0 {
		t.Fatalf("live stats %+v", s)
	}
}

// TestLiveUnackedStoredOnEveryLane: one timer serves every lane's held
// messages: those acknowledged in time are never stored, all the others
// are, whichever lane they are on, and the timer stops firing for good
// once nothing is held.
func TestLiveUnackedStoredOnEveryLane(t *testing.T) {
	in, rec, db := open(t, t.TempDir(), Config{LiveWait: 20 * time.Millisecond, Lanes: 4})
	defer db.Close()
	defer in.Close()
	p := &pusher{online: map[uint64]bool{1: true}} // the sender takes its receipts live
	lanes := map[uint64]bool{}
	const users = 16
	for to := uint64(2); to < 2+users; to++ {
		p.online[to] = true
		lanes[in.laneIndex(to)] = true
	}
	if len(lanes) != 4 {
		t.Fatalf("the recipients cover lanes %v, want all 4", lanes)
	}
	for to := uint64(2); to < 2+users; to++ {
		if !in.Deliver(msg(1, to, byte(to), "hi"), p.push) {
			t.Fatalf("Deliver to %d refused", to)
		}
	}
	// Every other recipient acknowledges at once.
	for _, e := range p.pushed() {
		if e.To%2 == 0 && e.Kind == KindMessage {
			if err := in.AckEntries(e.To, []Acked{liveAcked(e)}, p.push); err != nil {
				t.Fatal(err)
			}
		}
	}
	stored := map[uint64]bool{}
	for _, o := range rec.wait(t, users/2) {
		if o.msg == nil || o.Err != nil || o.msg.To%2 == 0 || stored[o.msg.To] {
			t.Fatalf("stored %+v", o)
		}
		stored[o.msg.To] = true
	}
	if s := in.Live(); s.Stored != users/2 || s.Acked != users/2 {
		t.Fatalf("live stats %+v", s)
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		in.liveMu.Lock()
		armed := in.liveArmed
		in.liveMu.Unlock()
		if !armed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the live timer is still armed with nothing held")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestLiveWaitsForQueuedEntries: while an entry for the inbox is queued
// or being committed, Deliver refuses, so a live seq never overtakes a
// stored one on the connection (invariant 1).
func TestLiveWaitsForQueuedEntries(t *testing.T) {
	e := newMemEnv()
	hold := make(chan struct{})
	var once sync.Once
	entered := make(chan struct{})
	e.beforeApply = func(*memBatch) error {
		once.Do(func() { close(entered); <-hold })
		return nil
	}
	in, rec := openMem(t, e, Config{LiveWait: time.Hour})
	p := &pusher{online: map[uint64]bool{2: true, 3: true}}
	if err := in.Submit(msg(1, 2, 1, "stored")); err != nil {
		t.Fatal(err)
	}
	<-entered // the lane holds the batch before its apply
	if in.Deliver(msg(1, 2, 2, "live"), p.push) {
		t.Fatal("Deliver went live while an entry for the same inbox was being committed")
	}
	if !in.Deliver(msg(1, 3, 3, "other"), p.push) {
		t.Fatal("another inbox's live delivery waited for this one's commit")
	}
	close(hold)
	rec.wait(t, 1)
	waitFor(t, func() bool { return in.Deliver(msg(1, 2, 4, "live"), p.push) })
	if got := p.pushed(); len(got) != 2 || got[1].ID != (codec.MsgID{4}) {
		t.Fatalf("pushed %+v", got)
	}
}

// TestLiveReceipt: a delivered receipt goes live to an online sender and
// is not held (its ACK settles nothing, and nothing is stored); to a
// sender that cannot take it live it is stored.
func TestLiveReceipt(t *testing.T) {
	in, rec, db := open(t, t.TempDir(), Config{LiveWait: time.Hour})
	defer db.Close()
	defer in.Close()
	p := &pusher{online: map[uint64]bool{1: true, 2: true}}
	in.Deliver(msg(1, 2, 7, "hi"), p.push)
	in.AckEntries(2, []Acked{liveAcked(p.pushed()[0])}, p.push)
	r := p.pushed()[1]
	if r.Kind != KindReceipt || r.To != 1 {
		t.Fatalf("pushed %+v", r)
	}
	if err := in.AckEntries(1, []Acked{liveAcked(r)}, p.push); err != nil {
		t.Fatal(err)
	}
	// To an offline sender (3): stored.
	p.online[3] = false
	m := msg(3, 2, 8, "hi")
	id := m.ID
	in.Deliver(m, p.push)
	got := p.pushed()
	in.AckEntries(2, []Acked{liveAcked(got[len(got)-1])}, p.push)
	d := rec.wait(t, 1)[0]
	if d.Kind != KindReceipt || d.To != 3 || d.ReceiptKind != codec.ReceiptDelivered || d.IDs.At(0) != id {
		t.Fatalf("stored %+v", d)
	}
	if n := countKeys(t, db, store.PrefixInbox); n != 1 {
		t.Fatalf("%d inbox entries, want the offline sender's receipt only", n)
	}
}

// TestLiveFoldReceipt: a message whose sender takes the receipt in its
// answer (FoldReceipt) gets no RECEIPT entry, live or stored, when it is
// acknowledged live: LiveAcked sees it with the ACK's time. Another
// message in the same ACK, not folded, still gets its receipt.
func TestLiveFoldReceipt(t *testing.T) {
	in, rec, db := open(t, t.TempDir(), Config{LiveWait: time.Hour})
	defer db.Close()
	defer in.Close()
	// The folded message's sender (1) is online: a receipt for it would be
	// pushed, at once. The other's (3) is not: its receipt is stored.
	p := &pusher{online: map[uint64]bool{1: true, 2: true}}
	folded, plain := msg(1, 2, 7, "folded"), msg(3, 2, 8, "plain")
	folded.FoldReceipt = true
	foldedID, plainID := folded.ID, plain.ID
	before := uint64(time.Now().UnixMilli())
	in.Deliver(folded, p.push)
	in.Deliver(plain, p.push)
	got := p.pushed()
	if err := in.AckEntries(2, []Acked{liveAcked(got[0]), liveAcked(got[1])}, p.push); err != nil {
		t.Fatal(err)
	}
	if got := p.pushed(); len(got) != 2 {
		t.Fatalf("pushed %+v after the ACK: want no receipt for the folded message", got[2:])
	}
	l := rec.live()
	if len(l) != 2 || l[0].ID != foldedID || !l[0].FoldReceipt || l[0].Delivered < before || l[1].ID != plainID {
		t.Fatalf("LiveAcked got %+v", l)
	}
	d := rec.wait(t, 1)[0] // the plain message's receipt, stored for its offline sender
	if d.Kind != KindReceipt || d.To != 3 || d.IDs.Len() != 1 || d.IDs.At(0) != plainID {
		t.Fatalf("stored %+v", d)
	}
	if n := countKeys(t, db, store.PrefixInbox); n != 1 {
		t.Fatalf("%d inbox entries, want 1: the folded message's receipt is in its answer", n)
	}
}

// TestLiveOff: a negative LiveWait stores every message first; a DUP
// resend is never live either way.
func TestLiveOff(t *testing.T) {
	in, _, db := open(t, t.TempDir(), Config{LiveWait: -1})
	defer db.Close()
	defer in.Close()
	p := &pusher{online: map[uint64]bool{2: true}}
	if in.Deliver(msg(1, 2, 7, "hi"), p.push) {
		t.Fatal("live with LiveWait < 0")
	}
	in2, _, db2 := open(t, t.TempDir(), Config{})
	defer db2.Close()
	defer in2.Close()
	m := msg(1, 2, 7, "hi")
	m.Dup = true
	if in2.Deliver(m, p.push) || len(p.pushed()) != 0 {
		t.Fatal("a DUP resend went live without the dedup check")
	}
}

// TestLiveReadLogMerged: the read-log entries of one conversation's
// messages acknowledged live one by one become one record, written with
// the lane's next batch.
func TestLiveReadLogMerged(t *testing.T) {
	in, rec, db := open(t, t.TempDir(), Config{LiveWait: time.Hour})
	defer db.Close()
	defer in.Close()
	p := &pusher{online: map[uint64]bool{1: true, 2: true}}
	var ids codec.IDList
	for i := byte(1); i <= 3; i++ {
		m := msg(1, 2, i, "hi")
		ids = ids.AppendID(m.ID) // m is recycled once acknowledged
		if !in.Deliver(m, p.push) {
			t.Fatalf("message %d not live", i)
		}
		got := p.pushed()
		if err := in.AckEntries(2, []Acked{liveAcked(got[len(got)-1])}, p.push); err != nil {
			t.Fatal(err)
		}
	}
	if err := in.Submit(msg(3, 2, 9, "a batch in bob's lane")); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, 1)
	if n := countKeys(t, db, store.PrefixReadLog); n != 1 {
		t.Fatalf("%d read-log records for one conversation's three messages, want 1", n)
	}
	missing := make(chan codec.IDList, 1)
	in.MarkRead(2, 1, 0, ids, func(l codec.IDList, _ error) { missing <- l })
	if l := <-missing; l.Len() != 0 {
		t.Fatalf("READ missed %d of 3", l.Len())
	}
}
