//go:build !race

package router

import (
	"errors"
	"testing"
	"time"

	"github.com/chatd/chatd/internal/offline"
)

// TestLivePushNoAlloc guards the hot path: pushing an applied entry to a
// caught-up session allocates nothing once its window's ring is borrowed,
// latency measurement (Delivered) included, and so does the ACK of it
// (the list of acknowledged entries and the push function it hands the
// inbox are lent from pools). Not under -race, where sync.Pool drops items
// on purpose.
func TestLivePushNoAlloc(t *testing.T) {
	in := &countingInbox{fakeInbox: newInbox()}
	r := newRouter(in, 1<<20, 1<<30)
	var waits time.Duration
	r.delivered = func(_ bool, d time.Duration) { waits += d }
	c := &fakeConn{user: 1, out: make([]byte, 0, 4096)}
	login(t, r, c)
	op := &offline.Stored{To: 1, Entry: offline.Entry{Kind: offline.KindMessage, From: 9, Body: []byte("hello")}}
	ops := []*offline.Stored{op}
	b := &batch{}
	seq := uint64(0)
	r.Applied(ops, b) // borrow the ring
	n := testing.AllocsPerRun(1000, func() {
		seq++
		op.Seq, op.Time = seq, seq
		r.Applied(ops, b)
		if _, err := r.Ack(c, seq, b); err != nil {
			t.Fatal(err)
		}
		c.out = c.out[:0]
	})
	if n != 0 {
		t.Fatalf("a live push allocates %v times per entry", n)
	}
	if c.sess.pushed != seq || in.acks != int(seq) {
		t.Fatalf("pushed %d and acknowledged %d, want %d of each", c.sess.pushed, in.acks, seq)
	}
}

// countingInbox counts the entries acknowledged, keeping nothing.
type countingInbox struct {
	*fakeInbox
	acks int
}

func (in *countingInbox) AckEntries(_ uint64, acked []offline.Acked, push func(*offline.Stored) bool) error {
	if push == nil {
		return errors.New("no push function")
	}
	in.acks += len(acked)
	return nil
}
