package offline

import (
	"errors"
	"testing"
	"time"

	"github.com/chatd/chatd/codec"
)

// TestFirstMessagesToFullInboxes is the bench for issue 11.8: it fills
// 10,000 inboxes to a quota of 100 (a million entries), restarts so that
// nothing about them is in memory, and then times one first message to
// each of the 10,000 users, all of which the quota refuses. Before per-
// inbox counts, each first message counted its inbox inside the commit
// loop. Run with
//
//	CHATD_QUOTA_BENCH=1 go test ./internal/offline -run TestFirstMessagesToFullInboxes -v
func TestFirstMessagesToFullInboxes(t *testing.T) {
	optIn(t, "CHATD_QUOTA_BENCH", "the bench")
	const users, quota = 10_000, 100
	dir := t.TempDir()
	cfg := Config{Quota: quota, Lanes: 8}
	in, rec, db := open(t, dir, cfg)
	start := time.Now()
	n := 0
	for i := 0; i < quota; i++ {
		for u := uint64(1000); u < 1000+users; u++ {
			op := msg(1, u, 0, "fill")
			op.ID = codec.MsgID{byte(i), byte(u), byte(u >> 8), byte(u >> 16), 1}
			for in.Submit(op) == ErrBusy {
				rec.wait(t, 1)
				n++
			}
		}
	}
	rec.wait(t, users*quota-n)
	t.Logf("filled %d inboxes with %d entries each in %v", users, quota, time.Since(start).Round(time.Millisecond))
	in.Close()
	db.Close()

	start = time.Now()
	in, rec, db = open(t, dir, cfg)
	defer db.Close()
	defer in.Close()
	waitCounted(t, in)
	waitFor(t, in.seen.ready.Load)
	t.Logf("restart: %v until every inbox was counted and the id filter loaded", time.Since(start).Round(time.Millisecond))

	start = time.Now()
	for u := uint64(1000); u < 1000+users; u++ {
		op := msg(2, u, 0, "one more")
		op.ID = codec.MsgID{byte(u), byte(u >> 8), byte(u >> 16), 2}
		if err := in.Submit(op); err != nil {
			t.Fatal(err)
		}
	}
	for _, op := range rec.wait(t, users) {
		if !errors.Is(op.Err, ErrInboxFull) {
			t.Fatalf("a message to a full inbox: %v", op.Err)
		}
	}
	d := time.Since(start)
	t.Logf("first messages to %d full inboxes: %v, %.0f msgs/s", users, d.Round(time.Millisecond), users/d.Seconds())
}
