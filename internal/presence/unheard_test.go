package presence

import (
	"slices"
	"testing"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// A watch crosses nodes at most once, and so does the home's first
// update: the watching node names the users it has heard nothing of
// (Unheard), asks their homes again, and a home that has the watch
// already sends the state again. A home's "no such account" ends the
// asking.
func TestUnheardIsAskedAgain(t *testing.T) {
	db := openMem(t, vfs.NewMem())
	t.Cleanup(func() { db.Close() })
	var asked []uint64
	node := New[*watcher](db, Config{Interval: time.Hour, Online: func(uint64) bool { return false },
		Remote: func(u uint64) bool { return u < 10 }, Watch: func(u uint64, on bool) {
			if on {
				asked = append(asked, u)
			}
		}})
	t.Cleanup(node.Close)
	relayed := make(chan []Update, 8)
	home, o := startMem(t)
	home.cfg.Relay = func(_ string, us []Update) { relayed <- us }
	o.set(1, true)

	w := &watcher{}
	node.Subscribe(w, []uint64{1, 2, 20}) // 20 is homed here
	if !slices.Equal(asked, []uint64{1, 2}) {
		t.Fatalf("watches sent for %v", asked)
	}
	if got := w.take(); len(got) != 1 || got[0].User != 20 {
		t.Fatalf("before any home answered: %+v", got)
	}
	unheard := func() []uint64 { u := node.Unheard(); slices.Sort(u); return u }
	if got := unheard(); !slices.Equal(got, []uint64{1, 2}) {
		t.Fatalf("unheard %v", got)
	}

	// The home took the watch of 1, but its update was lost.
	home.WatchFrom("n2", 1, 1, true)
	home.Tick()
	<-relayed // lost
	if got := unheard(); !slices.Equal(got, []uint64{1, 2}) {
		t.Fatalf("unheard after a lost update %v", got)
	}
	// 2's home says there is no such account; 1's home is asked again and
	// sends the state again.
	node.NoSuchUser(2)
	home.WatchFrom("n2", 1, 1, true)
	home.Tick()
	select {
	case us := <-relayed:
		node.Heard(us)
	default:
		t.Fatal("the home did not send the state again")
	}
	node.Tick()
	if got := w.take(); len(got) != 1 || got[0].User != 1 || got[0].State != codec.PresenceOnline {
		t.Fatalf("after asking again: %+v", got)
	}
	if got := unheard(); len(got) != 0 {
		t.Fatalf("unheard once answered: %v", got)
	}

	// Watched anew after nobody watched 2: asked again, as it may exist by now.
	node.Forget(w, []uint64{2})
	node.Subscribe(w, []uint64{2})
	if got := unheard(); !slices.Equal(got, []uint64{2}) {
		t.Fatalf("unheard after watching anew %v", got)
	}
}
