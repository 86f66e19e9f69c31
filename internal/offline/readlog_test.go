package offline

import (
	"testing"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/store"
)

// TestReadLogSameBatch: an ACK and two READs of the same id that share one
// lane batch produce one read receipt; the second READ is refused, and
// the read log is empty afterwards.
func TestReadLogSameBatch(t *testing.T) {
	in, rec, db := open(t, t.TempDir(), Config{})
	defer db.Close()
	defer in.Close()
	const alice, bob = 1, 2
	m := msg(alice, bob, 7, "hi")
	if err := in.Submit(m); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, 1)

	results := make(chan codec.IDList, 2)
	done := func(missing codec.IDList, err error) {
		if err != nil {
			t.Error(err)
		}
		results <- missing
	}
	ids := codec.IDList(nil).AppendID(m.ID)
	read := func() *op[int] {
		return markReadOp[int](bob, &readOp{sender: alice, ids: ids, done: done})
	}
	// Queue all three at once so that one commit takes them together.
	l := in.lane(bob)
	l.mu.Lock()
	l.queue = append(l.queue, &op[int]{kind: kindAck, st: Stored{To: bob}, acked: []Acked{m.op.st.Acked()}}, read(), read())
	l.mu.Unlock()
	l.kick()

	if first := <-results; first.Len() != 0 {
		t.Fatalf("first READ missed %d ids", first.Len())
	}
	if second := <-results; second.Len() != 1 || second.At(0) != m.ID {
		t.Fatalf("second READ missed %v, want the id", second)
	}
	// alice's inbox gets the delivered and the read receipt, nothing more.
	var kinds []codec.ReceiptKind
	waitFor(t, func() bool {
		kinds = kinds[:0]
		in.Read(alice, 0, 100, func(e *Entry) bool { kinds = append(kinds, e.ReceiptKind); return true })
		return len(kinds) >= 2
	})
	if len(kinds) != 2 || kinds[0] != codec.ReceiptDelivered || kinds[1] != codec.ReceiptRead {
		t.Fatalf("alice's receipts: %v", kinds)
	}
	if n := countKeys(t, db, store.PrefixReadLog); n != 0 {
		t.Fatalf("%d read-log records left after the read", n)
	}
}

// TestReadLogTrimmed: records older than the TTL's days go with the daily
// trim, and a READ after that is refused.
func TestReadLogTrimmed(t *testing.T) {
	in, rec, db := open(t, t.TempDir(), Config{TTL: 48 * time.Hour})
	defer db.Close()
	defer in.Close()
	m := msg(1, 2, 9, "old")
	in.Submit(m)
	rec.wait(t, 1)
	if err := in.AckEntries(2, []Acked{m.op.st.Acked()}, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return countKeys(t, db, store.PrefixReadLog) == 1 }) // the ack wrote its read-log record
	today := uint32(time.Now().UnixMilli() / 86_400_000)
	in.trimReadLog(today + in.readLogDays() - 1) // still inside the window
	if n := countKeys(t, db, store.PrefixReadLog); n != 1 {
		t.Fatalf("trim inside the window left %d records", n)
	}
	in.trimReadLog(today + in.readLogDays())
	if n := countKeys(t, db, store.PrefixReadLog); n != 0 {
		t.Fatalf("trim past the window left %d records", n)
	}
	missing := make(chan codec.IDList, 1)
	in.MarkRead(2, 1, 0, codec.IDList(nil).AppendID(m.ID), func(l codec.IDList, _ error) { missing <- l })
	if l := <-missing; l.Len() != 1 {
		t.Fatalf("READ after the trim missed %d ids, want 1", l.Len())
	}
}

// TestReadLogSlots: each lane writes its read-log buffer at its own slot
// of readLogDelay, so that lanes armed at the same moment (a steady flow
// reaches all of them at once) do not sort and commit at the same time;
// and a buffer waits more than 0 and at most readLogDelay, whatever the
// clock says when it is armed.
func TestReadLogSlots(t *testing.T) {
	period := readLogDelay
	for _, slot := range []time.Duration{0, period / 8, period * 7 / 8, period - 1} {
		for _, at := range []int64{0, 1, int64(slot), int64(slot) + 1, int64(period) - 1, 1_732_000_000_123_456_789} {
			now := time.Unix(0, at)
			d := untilSlot(now, slot, period)
			if d <= 0 || d > period {
				t.Fatalf("untilSlot(%d, %v) = %v, want in (0, %v]", at, slot, d, period)
			}
			if got := time.Duration(now.Add(d).UnixNano()) % period; got != slot {
				t.Fatalf("untilSlot(%d, %v) = %v: fires at %v into the period, want %v", at, slot, d, got, slot)
			}
		}
	}

	in, _, db := open(t, t.TempDir(), Config{Lanes: 8})
	defer db.Close()
	defer in.Close()
	seen := map[time.Duration]bool{}
	for i, l := range in.lanes {
		if want := time.Duration(i) * period / 8; l.readsSlot != want || seen[l.readsSlot] {
			t.Fatalf("lane %d: slot %v, want %v, each its own", i, l.readsSlot, want)
		}
		seen[l.readsSlot] = true
	}
}
