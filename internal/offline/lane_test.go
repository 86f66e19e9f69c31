package offline

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chatd/codec"
)

// These tests run the lanes over memEnv: no Pebble, so that the commit
// rules (seq order, dedup, quota, group countdowns, ack before delete)
// are tested on their own, and under -race.

// noteRecorder is a recorder that also logs each durable op in e's log,
// so a test can see it after the syncs that must precede it.
type noteRecorder struct {
	*recorder
	e *memEnv
}

func (r noteRecorder) Durable(msgs []*tmsg, others []Done) {
	for _, m := range msgs {
		r.e.logNote(fmt.Sprintf("durable %d/%d", m.Group, m.To))
	}
	r.recorder.Durable(msgs, others)
}

func openMem(t *testing.T, e *memEnv, cfg Config) (*Inbox[int], *recorder) {
	t.Helper()
	rec := newRecorder()
	cfg.SweepEvery = time.Hour
	in, err := openEnv[int](e, cfg, noteRecorder{rec, e})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(in.Close)
	waitCounted(t, in)
	return in, rec
}

// entries returns user's inbox as Read sees it.
func entries(t *testing.T, in *Inbox[int], user uint64) []Entry {
	t.Helper()
	var out []Entry
	err := in.Read(user, 0, 1<<30, func(e *Entry) bool {
		c := *e
		c.Body = slices.Clone(e.Body)
		c.IDs = slices.Clone(e.IDs)
		out = append(out, c)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// usersInLanes returns n users in n different lanes, none in avoid's.
func usersInLanes(in *Inbox[int], n int, avoid ...uint64) []uint64 {
	used := map[uint64]bool{}
	for _, a := range avoid {
		used[in.laneIndex(a)] = true
	}
	var out []uint64
	for u := uint64(1); len(out) < n; u++ {
		if i := in.laneIndex(u); !used[i] {
			used[i] = true
			out = append(out, u)
		}
	}
	return out
}

// TestLaneSeqOrder: senders on many goroutines write to inboxes on many
// lanes; every inbox holds each sender's messages in the order sent, seqs
// increase, no seq is handed out twice, and the persisted mark is above
// every seq.
func TestLaneSeqOrder(t *testing.T) {
	e := newMemEnv()
	in, rec := openMem(t, e, Config{Lanes: 4})
	const senders, recipients, each = 6, 5, 150
	var wg sync.WaitGroup
	for s := uint64(0); s < senders; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				for r := uint64(0); r < recipients; r++ {
					op := msg(100+s, 1+r, 0, fmt.Sprint(i))
					op.ID = codec.MsgID{byte(s), byte(r), byte(i), byte(i >> 8)}
					if err := in.Submit(op); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	wg.Wait()
	for _, op := range rec.wait(t, senders*recipients*each) {
		if op.Err != nil {
			t.Fatal(op.Err)
		}
	}
	seen := map[uint64]bool{}
	var top uint64
	for r := uint64(1); r <= recipients; r++ {
		next := map[uint64]int{}
		var last uint64
		for _, en := range entries(t, in, r) {
			if en.Seq <= last || seen[en.Seq] {
				t.Fatalf("inbox %d: seq %d after %d (or reused)", r, en.Seq, last)
			}
			last, seen[en.Seq], top = en.Seq, true, max(top, en.Seq)
			if got := fmt.Sprint(next[en.From]); string(en.Body) != got {
				t.Fatalf("inbox %d: sender %d's message %q where %s was due", r, en.From, en.Body, got)
			}
			next[en.From]++
		}
		for s := uint64(0); s < senders; s++ {
			if next[100+s] != each {
				t.Fatalf("inbox %d has %d of sender %d's %d messages", r, next[100+s], 100+s, each)
			}
		}
	}
	rec.mu.Lock()
	last := map[uint64]uint64{}
	for _, op := range rec.applied {
		if op.Seq <= last[op.To] {
			t.Fatalf("applied out of order for %d: %d after %d", op.To, op.Seq, last[op.To])
		}
		last[op.To] = op.Seq
	}
	rec.mu.Unlock()
	v, _, err := e.Get(metaSeq)
	if err != nil || binary.BigEndian.Uint64(v) <= top {
		t.Fatalf("seq mark %x (%v) not above the top seq %d", v, err, top)
	}
}

// TestLaneDedup: a resent message gets its original's seq and time and
// is stored once; its id with another recipient or another body is
// refused. Both across batches and within one batch.
func TestLaneDedup(t *testing.T) {
	check := func(t *testing.T, in *Inbox[int], ops []*tmsg, got []*outcome) {
		t.Helper()
		orig, again, otherTo, otherBody := ops[0], ops[1], ops[2], ops[3]
		if orig.Err != nil || orig.Duplicate {
			t.Fatalf("original: %v, duplicate %v", orig.Err, orig.Duplicate)
		}
		if again.Err != nil || !again.Duplicate || again.Seq != orig.Seq || again.Time != orig.Time {
			t.Fatalf("resend: err %v dup %v seq %d/%d time %d/%d", again.Err, again.Duplicate, again.Seq, orig.Seq, again.Time, orig.Time)
		}
		if !errors.Is(otherTo.Err, ErrDuplicateID) || !errors.Is(otherBody.Err, ErrDuplicateID) {
			t.Fatalf("reused id: other recipient %v, other body %v", otherTo.Err, otherBody.Err)
		}
		if len(got) != len(ops) {
			t.Fatalf("%d durable for %d ops", len(got), len(ops))
		}
		if n := len(entries(t, in, orig.To)); n != 1 {
			t.Fatalf("inbox %d holds %d entries", orig.To, n)
		}
		if n := len(entries(t, in, otherTo.To)); n != 0 {
			t.Fatalf("inbox %d holds %d entries", otherTo.To, n)
		}
	}
	four := func() []*tmsg {
		again := msg(9, 1, 7, "hi")
		again.Dup = true
		return []*tmsg{msg(9, 1, 7, "hi"), again, msg(9, 2, 7, "hi"), msg(9, 1, 7, "other")}
	}
	t.Run("batches", func(t *testing.T) {
		in, rec := openMem(t, newMemEnv(), Config{Lanes: 4})
		ops := four()
		var got []*outcome
		for _, op := range ops {
			if err := in.Submit(op); err != nil {
				t.Fatal(err)
			}
			got = append(got, rec.wait(t, 1)...)
		}
		check(t, in, ops, got)
	})
	t.Run("one batch", func(t *testing.T) {
		e := newMemEnv()
		entered, release := make(chan struct{}), make(chan struct{})
		var once sync.Once
		e.beforeApply = func(*memBatch) error {
			once.Do(func() { close(entered); <-release })
			return nil
		}
		in, rec := openMem(t, e, Config{Lanes: 1})
		held := make(chan error, 1)
		go func() { held <- in.Submit(msg(50, 51, 1, "holds the lane")) }()
		<-entered
		ops := four()
		for _, op := range ops {
			if err := in.Submit(op); err != nil {
				t.Fatal(err)
			}
		}
		close(release)
		if err := <-held; err != nil {
			t.Fatal(err)
		}
		got := rec.wait(t, 5)[1:]
		check(t, in, ops, got)
		applies := 0
		for _, ev := range e.events() {
			if !ev.synced && ev.note == "" {
				applies++
			}
		}
		if applies != 2 {
			t.Fatalf("%d batches applied, want 2 (the four ops in one)", applies)
		}
	})
}

// TestLaneQuota: messages beyond the quota are refused, receipts are not,
// and an acknowledgement makes room.
func TestLaneQuota(t *testing.T) {
	in, rec := openMem(t, newMemEnv(), Config{Lanes: 2, Quota: 3})
	var ops []*tmsg
	for i := byte(0); i < 5; i++ {
		op := msg(9, 1, i, "m")
		ops = append(ops, op)
		if err := in.Submit(op); err != nil {
			t.Fatal(err)
		}
	}
	rec.wait(t, 5)
	for i, op := range ops {
		if full := errors.Is(op.Err, ErrInboxFull); full != (i >= 3) || (!full && op.Err != nil) {
			t.Fatalf("message %d: %v", i, op.Err)
		}
	}
	r := Receipt{To: 1, Kind: codec.ReceiptDelivered, By: 2, IDs: codec.IDList(nil).AppendID(codec.MsgID{1})}
	if err := in.SubmitReceipt(r); err != nil {
		t.Fatal(err)
	}
	if got := rec.wait(t, 1)[0]; got.Err != nil || got.Kind != KindReceipt {
		t.Fatalf("receipt %+v", got)
	}
	if n := len(entries(t, in, 1)); n != 4 {
		t.Fatalf("inbox holds %d entries, want 3 messages and the receipt", n)
	}
	if err := in.Ack(1, 0, ops[1].Seq); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, 1) // the delivered receipt to 9
	waitFor(t, func() bool { return len(entries(t, in, 1)) == 2 })
	again := msg(9, 1, 10, "room now")
	if err := in.Submit(again); err != nil {
		t.Fatal(err)
	}
	if rec.wait(t, 1); again.Err != nil {
		t.Fatalf("after an ack: %v", again.Err)
	}
}

// syncOf returns the index in log of the sync that returned of the first
// batch writing (del false) or deleting a key under prefix, or -1.
func syncOf(log []memEvent, prefix []byte, synced, del bool) int {
	for i, ev := range log {
		if ev.b != nil && ev.synced == synced && ev.b.touches(prefix, del) {
			return i
		}
	}
	return -1
}

// TestGroupCountdown: the SENT of a group message (its Durable) comes only
// after every member's entry is synced, and a failure of several parts
// reports the first.
func TestGroupCountdown(t *testing.T) {
	t.Run("after every part", func(t *testing.T) {
		e := newMemEnv()
		in, rec := openMem(t, e, Config{Lanes: 8})
		const group = 1000
		members := usersInLanes(in, 3, group)
		op := &tmsg{Group: group, From: 9, ID: codec.MsgID{1}, Body: []byte("to all")}
		if err := in.SubmitGroup(op, members); err != nil {
			t.Fatal(err)
		}
		got := rec.wait(t, 1)[0]
		if got.msg != op || op.Err != nil || got.Kind != KindMessage {
			t.Fatalf("durable %+v", got)
		}
		log := e.events()
		durable := slices.IndexFunc(log, func(ev memEvent) bool { return ev.note == fmt.Sprintf("durable %d/0", group) })
		for _, m := range members {
			if s := syncOf(log, inboxPrefix(m), true, false); s < 0 || s > durable {
				t.Fatalf("member %d's entry synced at %d, the group message durable at %d", m, s, durable)
			}
			if es := entries(t, in, m); len(es) != 1 || string(es[0].Body) != "to all" {
				t.Fatalf("member %d: %+v", m, es)
			}
		}
		if s := syncOf(log, []byte{'b'}, true, false); s < 0 || s > durable {
			t.Fatalf("body synced at %d, durable at %d", s, durable)
		}
	})
	t.Run("first error kept", func(t *testing.T) {
		e := newMemEnv()
		in, rec := openMem(t, e, Config{Lanes: 8})
		const group = 1000
		ms := usersInLanes(in, 2, group)
		a, b := ms[0], ms[1]
		// marker shares a's lane: its sync comes after a's part is done.
		marker := a + 1
		for in.laneIndex(marker) != in.laneIndex(a) {
			marker++
		}
		errA, errB := errors.New("a's disk"), errors.New("b's disk")
		aFailed, markerSynced := make(chan struct{}), make(chan struct{})
		e.beforeSync = func(mb *memBatch) error {
			switch {
			case mb.touches(inboxPrefix(a), false):
				close(aFailed)
				return errA
			case mb.touches(inboxPrefix(marker), false):
				close(markerSynced)
			case mb.touches(inboxPrefix(b), false):
				<-markerSynced
				return errB
			}
			return nil
		}
		op := &tmsg{Group: group, From: 9, ID: codec.MsgID{1}, Body: []byte("to all")}
		if err := in.SubmitGroup(op, []uint64{a, b}); err != nil {
			t.Fatal(err)
		}
		<-aFailed
		if err := in.Submit(msg(8, marker, 1, "marker")); err != nil {
			t.Fatal(err)
		}
		got := rec.wait(t, 2)
		if !slices.ContainsFunc(got, func(o *outcome) bool { return o.msg == op }) {
			t.Fatalf("group op not durable: %+v", got)
		}
		if !errors.Is(op.Err, errA) || errors.Is(op.Err, errB) || !errors.Is(op.Err, ErrUnknownOutcome) {
			t.Fatalf("group op error %v, want a's", op.Err)
		}
		select {
		case again := <-rec.durable:
			t.Fatalf("durable again: %+v", again)
		case <-time.After(50 * time.Millisecond):
		}
	})
}

// TestGroupCountdownRace fans many group messages out over many lanes at
// once, with direct messages between them: each is durable once, without
// error, and every member of a group sees its messages in one order.
func TestGroupCountdownRace(t *testing.T) {
	in, rec := openMem(t, newMemEnv(), Config{Lanes: 8})
	const groups, perGroup, senders, each = 6, 5, 4, 40
	members := func(g uint64) []uint64 {
		var m []uint64
		for i := uint64(0); i < perGroup; i++ {
			m = append(m, 1+(g*3+i)%17)
		}
		return m
	}
	var wg sync.WaitGroup
	for s := uint64(0); s < senders; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				g := uint64(i % groups)
				op := &tmsg{Group: 1000 + g, From: 200 + s, ID: codec.MsgID{byte(s), byte(i)}, Body: []byte("g")}
				if err := in.SubmitGroup(op, members(g)); err != nil {
					t.Error(err)
				}
				d := msg(200+s, 1+uint64(i)%17, byte(i), "d")
				d.ID[1] = 0xff
				d.ID[2] = byte(s)
				if err := in.Submit(d); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	got := rec.wait(t, 2*senders*each)
	dup := map[*tmsg]bool{}
	for _, o := range got {
		if o.Err != nil || o.msg == nil || dup[o.msg] {
			t.Fatalf("%+v: err %v, twice %v", o, o.Err, dup[o.msg])
		}
		dup[o.msg] = true
	}
	for g := uint64(0); g < groups; g++ {
		var order []codec.MsgID
		for _, m := range members(g) {
			var mine []codec.MsgID
			for _, en := range entries(t, in, m) {
				if en.Group == 1000+g {
					mine = append(mine, en.ID)
				}
			}
			if order == nil {
				order = mine
			} else if !slices.Equal(order, mine) {
				t.Fatalf("group %d: member %d saw another order", g, m)
			}
		}
		want := 0
		for i := 0; i < each; i++ {
			if uint64(i%groups) == g {
				want += senders
			}
		}
		if len(order) != want {
			t.Fatalf("group %d: %d messages", g, len(order))
		}
	}
}

// TestAckReceiptBeforeDelete: acknowledged entries are deleted only after
// the delivered receipt they produce is synced.
func TestAckReceiptBeforeDelete(t *testing.T) {
	for _, listed := range []bool{false, true} {
		t.Run(fmt.Sprintf("listed=%v", listed), func(t *testing.T) {
			e := newMemEnv()
			in, rec := openMem(t, e, Config{Lanes: 4})
			us := usersInLanes(in, 2)
			reader, sender := us[0], us[1]
			for i := byte(0); i < 3; i++ {
				if err := in.Submit(msg(sender, reader, i, "m")); err != nil {
					t.Fatal(err)
				}
			}
			rec.wait(t, 3)
			es := entries(t, in, reader)
			var err error
			if listed {
				var acked []Acked
				for i := range es {
					acked = append(acked, es[i].Acked())
				}
				err = in.AckEntries(reader, acked, nil)
			} else {
				err = in.Ack(reader, 0, es[len(es)-1].Seq)
			}
			if err != nil {
				t.Fatal(err)
			}
			r := rec.wait(t, 1)[0]
			if r.Kind != KindReceipt || r.To != sender || r.IDs.Len() != 3 || r.ReceiptKind != codec.ReceiptDelivered {
				t.Fatalf("receipt %+v", r)
			}
			waitFor(t, func() bool { return !e.has(inboxKey(nil, reader, es[0].Seq)) })
			log := e.events()
			synced := syncOf(log, inboxPrefix(sender), true, false)
			deleted := syncOf(log, inboxPrefix(reader), false, true)
			if synced < 0 || deleted < 0 || deleted < synced {
				t.Fatalf("receipt synced at %d, entries deleted at %d", synced, deleted)
			}
			if n := len(entries(t, in, reader)); n != 0 {
				t.Fatalf("%d entries left", n)
			}
		})
	}
}

// TestLazyDeleteRidesWithNextBatch is issue 14.1: the delete of entries
// whose receipts are durable waits for the reader's lane's next batch (up
// to LazyOps) instead of costing a batch and a sync of its own; with no
// other op it still goes, after LazyOps.
func TestLazyDeleteRidesWithNextBatch(t *testing.T) {
	for _, alone := range []bool{false, true} {
		t.Run(fmt.Sprintf("alone=%v", alone), func(t *testing.T) {
			e := newMemEnv()
			lazy := time.Hour
			if alone {
				lazy = 20 * time.Millisecond
			}
			in, rec := openMem(t, e, Config{Lanes: 4, LazyOps: lazy})
			us := usersInLanes(in, 2)
			reader, sender := us[0], us[1]
			if err := in.Submit(msg(sender, reader, 1, "m")); err != nil {
				t.Fatal(err)
			}
			rec.wait(t, 1)
			es := entries(t, in, reader)
			if err := in.Ack(reader, 0, es[0].Seq); err != nil {
				t.Fatal(err)
			}
			if r := rec.wait(t, 1)[0]; r.Kind != KindReceipt {
				t.Fatalf("got %+v, want the receipt", r)
			}
			key := inboxKey(nil, reader, es[0].Seq)
			if alone {
				waitFor(t, func() bool { return !e.has(key) })
				return
			}
			if poll(100*time.Millisecond, func() bool { return !e.has(key) }) {
				t.Fatal("the delete went in a batch of its own")
			}
			if err := in.Submit(msg(sender, reader, 2, "m2")); err != nil {
				t.Fatal(err)
			}
			rec.wait(t, 1)
			if e.has(key) {
				t.Fatal("the acknowledged entry outlived the reader's next batch")
			}
			for _, ev := range e.events() {
				if ev.b != nil && !ev.synced && ev.b.touches(inboxPrefix(reader), true) && !ev.b.touches(inboxPrefix(reader), false) {
					t.Fatal("a batch held only the delete")
				}
			}
		})
	}
}

// TestSettlingEmptiesAfterDelete: once acknowledged entries are deleted,
// the lane forgets them. Entries deleted by the op queued after their
// receipts were durable stayed in the settling set for good: one map entry
// per message delivered, never freed.
func TestSettlingEmptiesAfterDelete(t *testing.T) {
	e := newMemEnv()
	rec := newRecorder()
	in, err := openEnv[int](e, Config{Lanes: 4, SweepEvery: time.Hour, LazyOps: time.Millisecond}, noteRecorder{rec, e})
	if err != nil {
		t.Fatal(err)
	}
	waitCounted(t, in)
	us := usersInLanes(in, 2)
	reader, sender := us[0], us[1]
	for i := byte(0); i < 3; i++ {
		if err := in.Submit(msg(sender, reader, i, "m")); err != nil {
			t.Fatal(err)
		}
	}
	rec.wait(t, 3)
	es := entries(t, in, reader)
	if err := in.Ack(reader, 0, es[len(es)-1].Seq); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return len(entries(t, in, reader)) == 0 })
	in.Close() // the lanes have stopped: their state can be read
	for i, l := range in.lanes {
		if len(l.settling) != 0 || len(l.deleted) != 0 {
			t.Errorf("lane %d: %d entries still settling, %d deleted refs kept", i, len(l.settling), len(l.deleted))
		}
	}
}
