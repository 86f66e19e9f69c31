//go:build !race

package router

import (
	"testing"
	"time"

	"github.com/chatd/chatd/internal/offline"
)

// TestLivePushNoAlloc guards the hot path: pushing an applied entry to a
// caught-up session allocates nothing once its window's ring is borrowed,
// latency measurement (Delivered) included.
// (An ACK allocates the slice of acknowledged entries it hands to the
// inbox, which keeps it.) Not under -race, where sync.Pool drops items on
// purpose.
func TestLivePushNoAlloc(t *testing.T) {
	in := newInbox()
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
		c.out = c.out[:0]
	})
	if n != 0 {
		t.Fatalf("a live push allocates %v times per entry", n)
	}
	if c.sess.pushed != seq {
		t.Fatalf("pushed %d, want %d", c.sess.pushed, seq)
	}
}
