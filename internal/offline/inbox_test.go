package offline

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/store"
	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/cockroachdb/pebble/v2/internal/cache.(*Cache).runCleaner"))
}

// tmsg is the tests' message: the sender's handle is an int.
type tmsg = Message[int]

// outcome is what Durable reported of a message (msg), receipt or group
// event.
type outcome struct {
	msg           *tmsg
	Kind          Kind
	To, Seq, Time uint64
	By, Group     uint64
	ReceiptKind   codec.ReceiptKind
	IDs           codec.IDList
	Duplicate     bool
	Err           error
}

// recorder collects what the inbox reports.
type recorder struct {
	mu        sync.Mutex
	applied   []Stored
	liveAcked []*tmsg
	durable   chan *outcome
}

func newRecorder() *recorder { return &recorder{durable: make(chan *outcome, 1<<16)} }

func (r *recorder) Applied(entries []*Stored) {
	r.mu.Lock()
	for _, e := range entries {
		r.applied = append(r.applied, *e)
	}
	r.mu.Unlock()
}

func (r *recorder) LiveAcked(msgs []*tmsg) {
	r.mu.Lock()
	for _, m := range msgs {
		c := *m // recycled when this returns
		r.liveAcked = append(r.liveAcked, &c)
	}
	r.mu.Unlock()
}

func (r *recorder) Durable(msgs []*tmsg, others []Done) {
	for _, m := range msgs {
		r.durable <- &outcome{msg: m, Kind: KindMessage, To: m.To, Seq: m.Seq, Time: m.Time, Group: m.Group,
			Duplicate: m.Duplicate, Err: m.Err}
	}
	for _, d := range others {
		r.durable <- &outcome{Kind: d.Kind, To: d.To, Seq: d.Seq, Time: d.Time, By: d.By, Group: d.Group,
			ReceiptKind: d.ReceiptKind, IDs: d.IDs, Err: d.Err}
	}
}

func (r *recorder) wait(t *testing.T, n int) []*outcome {
	t.Helper()
	var out []*outcome
	for len(out) < n {
		select {
		case op := <-r.durable:
			out = append(out, op)
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d of %d ops became durable", len(out), n)
		}
	}
	return out
}

func open(t *testing.T, dir string, cfg Config) (*Inbox[int], *recorder, *pebble.DB) {
	t.Helper()
	db, err := store.Open(dir, store.Options{CacheSize: 4 << 20, MemTableSize: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	cfg.SweepEvery = time.Hour // tests call ExpireBefore themselves
	in, err := Open[int](db, cfg, rec)
	if err != nil {
		t.Fatal(err)
	}
	return in, rec, db
}

func msg(from, to uint64, id byte, body string) *tmsg {
	return &tmsg{From: from, To: to, ID: codec.MsgID{id}, Body: []byte(body)}
}

// countKeys counts the keys of the table with one-byte prefix p.
func countKeys(t *testing.T, db *pebble.DB, p byte) int {
	t.Helper()
	n, err := store.Count(db, []byte{p}, -1)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestQuota(t *testing.T) {
	in, rec, db := open(t, t.TempDir(), Config{Quota: 5, Lanes: 2})
	defer db.Close()
	defer in.Close()
	for i := 0; i < 7; i++ {
		in.Submit(msg(1, 2, byte(i), "x"))
	}
	full := 0
	var last uint64
	for _, op := range rec.wait(t, 7) {
		if errors.Is(op.Err, ErrInboxFull) {
			full++
		} else if op.Err == nil && op.Seq > last {
			last = op.Seq
		}
	}
	if full != 2 {
		t.Fatalf("%d refused, want 2 beyond a quota of 5", full)
	}
	// Acknowledging frees room: after the receipt is durable the entries go.
	in.Ack(2, 0, last)
	rec.wait(t, 1) // the delivered receipt to user 1
	waitFor(t, func() bool { n, _ := in.Count(2); return n == 0 })
	in.Submit(msg(1, 2, 9, "again"))
	if op := rec.wait(t, 1)[0]; op.Err != nil {
		t.Fatalf("after acks: %v", op.Err)
	}
}

func TestExpiry(t *testing.T) {
	in, rec, db := open(t, t.TempDir(), Config{Lanes: 2})
	defer db.Close()
	defer in.Close()
	base := time.Now()
	in.now = func() time.Time { return base }
	for i := 0; i < 10; i++ {
		in.Submit(msg(1, 2, byte(i), "old"))
	}
	rec.wait(t, 10)
	in.now = func() time.Time { return base.Add(2 * time.Hour) }
	for i := 10; i < 13; i++ {
		in.Submit(msg(1, 2, byte(i), "young"))
	}
	rec.wait(t, 3)
	if n := countKeys(t, db, store.PrefixExpiry); n != 2 {
		t.Fatalf("%d expiry index keys, want one per (user, hour) = 2", n)
	}
	in.ExpireBefore(base.Add(time.Hour))
	// The sender hears of it: one expired receipt naming all ten.
	r := rec.wait(t, 1)[0]
	if r.Kind != KindReceipt || r.To != 1 || r.ReceiptKind != codec.ReceiptExpired || r.By != 2 || r.IDs.Len() != 10 {
		t.Fatalf("expired receipt %+v", r)
	}
	waitFor(t, func() bool { n, _ := in.Count(2); return n == 3 })
	var bodies []string
	in.Read(2, 0, 100, func(e *Entry) bool { bodies = append(bodies, string(e.Body)); return true })
	for _, b := range bodies {
		if b != "young" {
			t.Fatalf("left %q after expiry", bodies)
		}
	}
	// The next sweep finds the old hour empty and drops its index key;
	// user 2's young hour and user 1's (the receipt) stay.
	waitFor(t, func() bool {
		in.ExpireBefore(base.Add(time.Hour))
		return in.Expired() == 10 && countKeys(t, db, store.PrefixExpiry) == 2
	})
}

func TestDedupSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	in, rec, db := open(t, dir, Config{Lanes: 2})
	in.Submit(msg(1, 2, 7, "once"))
	first := rec.wait(t, 1)[0]
	in.Close()
	db.Close()

	in, rec, db = open(t, dir, Config{Lanes: 2})
	defer db.Close()
	defer in.Close()
	waitFor(t, in.seen.ready.Load) // the id filter has the stored records
	again := msg(1, 2, 7, "once")
	in.Submit(again)
	got := rec.wait(t, 1)[0]
	if !got.Duplicate || got.Seq != first.Seq || got.Time != first.Time {
		t.Fatalf("resend without DUP after restart: duplicate=%v seq=%d (original %d)", got.Duplicate, got.Seq, first.Seq)
	}
	if n, _ := in.Count(2); n != 1 {
		t.Fatalf("%d entries, want the one original", n)
	}
	// A new id with DUP set is simply stored.
	fresh := msg(1, 2, 8, "new")
	fresh.Dup = true
	in.Submit(fresh)
	if op := rec.wait(t, 1)[0]; op.Duplicate {
		t.Fatal("an unseen id was taken for a duplicate")
	}
	// Seqs keep growing across the restart.
	if fresh.Seq <= first.Seq {
		t.Fatalf("seq %d after restart is not above %d", fresh.Seq, first.Seq)
	}
}

// TestNothingLeftAfterAcks stores many messages for many offline
// recipients, acknowledges everything (recipients, then senders their
// receipts), and counts the inbox keys left: none.
func TestNothingLeftAfterAcks(t *testing.T) {
	in, rec, db := open(t, t.TempDir(), Config{})
	defer db.Close()
	defer in.Close()
	const senders, recipients, per = 10, 50, 40 // 20,000 messages
	n := 0
	for s := uint64(1); s <= senders; s++ {
		for r := uint64(100); r < 100+recipients; r++ {
			for i := 0; i < per; i++ {
				op := msg(s, r, 0, "hello there")
				op.ID = codec.MsgID{byte(s), byte(r), byte(i), byte(i >> 8)}
				if err := in.Submit(op); err != nil {
					t.Fatal(err)
				}
				n++
			}
		}
	}
	rec.wait(t, n)
	if got := countKeys(t, db, store.PrefixInbox); got != n {
		t.Fatalf("%d inbox keys after storing %d messages", got, n)
	}
	for r := uint64(100); r < 100+recipients; r++ {
		in.Ack(r, 0, ^uint64(0)-1)
	}
	receipts := 0
	for receipts < senders*recipients {
		op := rec.wait(t, 1)[0]
		if op.Kind == KindReceipt {
			receipts++
		}
	}
	for s := uint64(1); s <= senders; s++ {
		in.Ack(s, 0, ^uint64(0)-1)
	}
	waitFor(t, func() bool { return countKeys(t, db, store.PrefixInbox) == 0 })
}

// optIn skips a study or bench (what) that takes minutes unless the
// environment variable env is set.
func optIn(t *testing.T, env, what string) {
	t.Helper()
	if os.Getenv(env) == "" {
		t.Skipf("set %s=1 to run %s", env, what)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// poll reports whether cond holds within d, checking every few ms.
func poll(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); ; time.Sleep(5 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// TestDeliveredEntriesLeaveNoTombstones is issue 14.1: an entry stored and
// acknowledged within one memtable's life should cost nothing on disk. A
// Delete leaves a tombstone in the flushed table, which compactions carry
// down the levels; a SingleDelete meets its one Set in the flush and both
// vanish.
func TestDeliveredEntriesLeaveNoTombstones(t *testing.T) {
	in, rec, db := open(t, t.TempDir(), Config{})
	defer db.Close()
	defer in.Close()
	// Entries for users 1 and 3 on the bottom level: user 2's entries
	// overlap them, so a flush must keep any tombstone it gets (in an
	// empty store Pebble drops tombstones with nothing beneath).
	for _, u := range []uint64{1, 3} {
		if err := in.Submit(msg(9, u, byte(u), "beneath")); err != nil {
			t.Fatal(err)
		}
	}
	var beneath uint64 // user 1's entry's seq
	for _, o := range rec.wait(t, 2) {
		if o.To == 1 {
			beneath = o.Seq
		}
	}
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := db.Compact(context.Background(), []byte{0}, []byte{0xff}, true); err != nil {
		t.Fatal(err)
	}
	const n = 1000 // far below one memtable
	for i := 0; i < n; i++ {
		op := msg(1, 2, 0, "hello there")
		op.ID = codec.MsgID{byte(i), byte(i >> 8)}
		if err := in.Submit(op); err != nil {
			t.Fatal(err)
		}
	}
	rec.wait(t, n)
	in.Ack(2, 0, ^uint64(0)-1)
	for got := 0; got < 1; { // one receipt lists up to 255 ids: wait for the first
		if op := rec.wait(t, 1)[0]; op.Kind == KindReceipt {
			got++
		}
	}
	// The receipts, not user 1's entry beneath. They are stored over a
	// few batches (255 ids each), so later ones may land after an ack:
	// ack again until only the two entries beneath are left.
	waitFor(t, func() bool {
		in.Ack(1, beneath, ^uint64(0)-1)
		return countKeys(t, db, store.PrefixInbox) == 2
	})
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	levels, err := db.SSTables(pebble.WithProperties())
	if err != nil {
		t.Fatal(err)
	}
	var tombstones uint64
	for _, level := range levels {
		for _, tb := range level {
			tombstones += tb.Properties.NumDeletions - tb.Properties.NumRangeDeletions
		}
	}
	if tombstones != 0 {
		t.Fatalf("%d point tombstones on disk after %d messages were delivered within one memtable", tombstones, n)
	}
}
