package offline

import (
	"errors"
	"testing"
	"time"
)

// waitCounted waits until countEntries has handed every lane its counts.
func waitCounted(t *testing.T, in *Inbox[int]) {
	t.Helper()
	select {
	case <-in.counted:
	case <-time.After(30 * time.Second):
		t.Fatal("inbox entries not counted within 30s")
	}
}

// TestQuotaAfterRestart fills inboxes to the quota, restarts, and checks
// that the quota holds both while the start-up count is still running
// (held back here) and after it: a message to a full inbox is refused, one
// to an inbox with room is stored, and acknowledging makes room.
func TestQuotaAfterRestart(t *testing.T) {
	const quota = 5
	dir := t.TempDir()
	cfg := Config{Quota: quota, Lanes: 2}
	in, rec, db := open(t, dir, cfg)
	id := byte(0)
	send := func(in *Inbox[int], to uint64) {
		id++
		if err := in.Submit(msg(1, to, id, "x")); err != nil {
			t.Fatal(err)
		}
	}
	// fill stores quota entries for each of full, in turns, and one fewer
	// for user 4, and waits until they are stored.
	fill := func(in *Inbox[int], rec *recorder, full ...uint64) {
		for i := 0; i < quota; i++ {
			for _, to := range full {
				send(in, to)
			}
		}
		for i := 0; i < quota-1; i++ {
			send(in, 4)
		}
		rec.wait(t, len(full)*quota+quota-1)
	}
	fill(in, rec, 2, 3)
	in.Close()
	db.Close()

	for _, early := range []bool{true, false} {
		release := make(chan struct{})
		if early {
			beforeCount = func() { <-release }
		}
		in, rec, db = open(t, dir, cfg)
		if !early {
			waitCounted(t, in)
		}
		// User 3's first news after the restart is an acknowledgement of
		// two entries: that must count down from the five stored before.
		var seqs []uint64
		in.Read(3, 0, 2, func(e *Entry) bool { seqs = append(seqs, e.Seq); return true })
		in.Ack(3, 0, seqs[1])
		rec.wait(t, 1) // the delivered receipt
		waitFor(t, func() bool { n, _ := in.Count(3); return n == quota-2 })
		// User 2 is full, 3 has room for two and 4 for one.
		for _, to := range []uint64{2, 3, 3, 3, 4, 4} {
			send(in, to)
		}
		full := map[uint64]int{}
		for _, op := range rec.wait(t, 6) {
			if errors.Is(op.Err, ErrInboxFull) {
				full[op.To]++
			} else if op.Err != nil {
				t.Fatal(op.Err)
			}
		}
		if full[2] != 1 || full[3] != 1 || full[4] != 1 {
			t.Fatalf("early=%v: refused per user %v, want one each for 2, 3 and 4", early, full)
		}
		for _, u := range []uint64{2, 3, 4} {
			if n, _ := in.Count(u); n != quota {
				t.Fatalf("early=%v: user %d holds %d entries", early, u, n)
			}
		}
		close(release)
		beforeCount = nil
		waitCounted(t, in)
		send(in, 3)
		if op := rec.wait(t, 1)[0]; !errors.Is(op.Err, ErrInboxFull) {
			t.Fatalf("early=%v: after the count, a full inbox took a message", early)
		}
		// Back to the stored state for the next round.
		in.Ack(3, 0, ^uint64(0)-1)
		in.Ack(4, 0, ^uint64(0)-1)
		rec.wait(t, 2)
		waitFor(t, func() bool { a, _ := in.Count(3); b, _ := in.Count(4); return a == 0 && b == 0 })
		fill(in, rec, 3)
		in.Close()
		db.Close()
	}
}
