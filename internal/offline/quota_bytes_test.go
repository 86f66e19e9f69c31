package offline

import (
	"errors"
	"strings"
	"testing"
)

// TestByteQuota fills an inbox with large bodies until the byte quota
// refuses one (the entry quota is far off), acknowledges some and sends
// again, then restarts and checks the count was rebuilt exactly, both
// while the start-up count is held back (the lane counts the inbox
// itself) and after it arrives.
func TestByteQuota(t *testing.T) {
	const body = 1000
	entry := int64(entryHeader + 32 + body) // one message entry's stored bytes
	dir := t.TempDir()
	cfg := Config{Quota: 1000, QuotaBytes: 3*entry + entry/2, Lanes: 2}
	in, rec, db := open(t, dir, cfg)
	id := byte(0)
	big := strings.Repeat("b", body)
	// send submits n large messages to user 2 and returns how many the
	// byte quota refused; any other error fails the test.
	send := func(in *Inbox[int], rec *recorder, n int) (refused int, stored []uint64) {
		t.Helper()
		for i := 0; i < n; i++ {
			id++
			if err := in.Submit(msg(1, 2, id, big)); err != nil {
				t.Fatal(err)
			}
		}
		for _, op := range rec.wait(t, n) {
			switch {
			case errors.Is(op.Err, ErrInboxBytesFull):
				refused++
			case op.Err != nil:
				t.Fatal(op.Err)
			default:
				stored = append(stored, op.Seq)
			}
		}
		return refused, stored
	}
	if refused, _ := send(in, rec, 5); refused != 2 {
		t.Fatalf("%d of 5 refused, want 2: three entries of %d bytes fill %d", refused, entry, cfg.QuotaBytes)
	}
	// Acknowledging two makes room for two: the receipt is durable, then
	// the entries and their bytes go.
	var seqs []uint64
	in.Read(2, 0, 2, func(e *Entry) bool { seqs = append(seqs, e.Seq); return true })
	in.Ack(2, 0, seqs[1])
	rec.wait(t, 1) // the delivered receipt to user 1
	waitFor(t, func() bool { n, _ := in.Count(2); return n == 1 })
	if refused, _ := send(in, rec, 3); refused != 1 {
		t.Fatalf("after acknowledging two, %d of 3 refused, want 1", refused)
	}
	in.Close()
	db.Close()

	// A restart counts the bytes again: three entries, full.
	for _, early := range []bool{true, false} {
		release := make(chan struct{})
		if early {
			beforeCount = func() { <-release }
		}
		in, rec, db = open(t, dir, cfg)
		if !early {
			waitCounted(t, in)
		}
		if refused, _ := send(in, rec, 1); refused != 1 {
			t.Fatalf("early=%v: a full inbox took a message after a restart", early)
		}
		var first uint64
		in.Read(2, 0, 1, func(e *Entry) bool { first = e.Seq; return true })
		in.Ack(2, 0, first)
		rec.wait(t, 1)
		waitFor(t, func() bool { n, _ := in.Count(2); return n == 2 })
		close(release)
		beforeCount = nil
		waitCounted(t, in)
		if refused, _ := send(in, rec, 2); refused != 1 {
			t.Fatalf("early=%v: with room for one, %d of 2 refused", early, refused)
		}
		in.Close()
		db.Close()
	}
}

// TestByteQuotaNotForReceipts: receipts count toward an inbox's bytes
// but are never refused, as with the entry quota.
func TestByteQuotaNotForReceipts(t *testing.T) {
	in, rec := openMem(t, newMemEnv(), Config{Lanes: 2, QuotaBytes: 100})
	in.Submit(msg(2, 1, 1, strings.Repeat("x", 200)))
	if op := rec.wait(t, 1)[0]; !errors.Is(op.Err, ErrInboxBytesFull) {
		t.Fatalf("a 200-byte body into a 100-byte quota: %v", op.Err)
	}
	in.Submit(msg(2, 1, 2, "y")) // 43 bytes in user 1's inbox
	in.Submit(msg(2, 1, 3, "yy"))
	in.Submit(msg(1, 2, 4, "a")) // user 2's, acknowledged below
	for _, op := range rec.wait(t, 3) {
		if op.Err != nil {
			t.Fatal(op.Err)
		}
	}
	var seq uint64
	in.Read(2, 0, 1, func(e *Entry) bool { seq = e.Seq; return true })
	in.Ack(2, 0, seq) // a delivered receipt for user 1, whose 87 bytes leave no room for it
	if op := rec.wait(t, 1)[0]; op.Kind != KindReceipt || op.Err != nil {
		t.Fatalf("receipt into a full inbox: kind %d, %v", op.Kind, op.Err)
	}
	in.Submit(msg(2, 1, 5, "z"))
	if op := rec.wait(t, 1)[0]; !errors.Is(op.Err, ErrInboxBytesFull) {
		t.Fatalf("a message past the byte quota, after the receipt: %v", op.Err)
	}
}
