package router

import (
	"testing"
	"time"

	"github.com/chatd/chatd/internal/offline"
)

// TestDeliveredByPath: Config.Delivered hears of every entry queued on a
// connection, once, with the path it took (the login drain, then live
// pushes) and how long it waited since its store time.
func TestDeliveredByPath(t *testing.T) {
	type seen struct {
		drained bool
		waited  time.Duration
	}
	var got []seen
	in := newInbox()
	r := New(Config[*fakeConn]{
		Window: 8, WindowBytes: 1 << 20,
		Session:   func(c *fakeConn) *Session { return &c.sess },
		User:      func(c *fakeConn) uint64 { return c.user },
		Delivered: func(drained bool, waited time.Duration) { got = append(got, seen{drained, waited}) },
	})
	r.Use(in)
	now := uint64(time.Now().UnixMilli())
	// Waiting before the login: stored an hour ago.
	in.store(1, 1, []byte("old"))
	in.ents[1][0].Time = now - uint64(time.Hour/time.Millisecond)
	c := &fakeConn{user: 1}
	login(t, r, c)
	fresh := in.store(1, 2, []byte("new"))
	fresh.Time = uint64(time.Now().UnixMilli())
	r.Applied([]*offline.Stored{fresh}, &batch{})
	if seqs := c.take(t); !equal(seqs, []uint64{1, 2}) {
		t.Fatalf("queued %v, want [1 2]", seqs)
	}
	if len(got) != 2 {
		t.Fatalf("Delivered called %d times, want 2: %v", len(got), got)
	}
	if !got[0].drained || got[0].waited < time.Hour || got[0].waited > time.Hour+time.Minute {
		t.Fatalf("drained entry: %+v, want drained and about an hour", got[0])
	}
	if got[1].drained || got[1].waited < 0 || got[1].waited > time.Minute {
		t.Fatalf("pushed entry: %+v, want pushed and under a minute", got[1])
	}
}
