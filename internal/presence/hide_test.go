package presence

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestHideFrom: a watcher the filter names sees the user hidden while
// another sees the real state, and a change of the filter reaches only
// the watcher it concerns, at the next tick after Changed.
func TestHideFrom(t *testing.T) {
	p, o := startMem(t)
	var mu sync.Mutex
	blocked := map[*watcher]bool{}
	p.HideFrom(Hiding[*watcher]{Hides: func(user uint64, w *watcher) bool {
		mu.Lock()
		defer mu.Unlock()
		return user == 1 && blocked[w]
	}})
	o.set(1, true)
	shut, open := &watcher{}, &watcher{}
	blocked[shut] = true
	p.Subscribe(shut, []uint64{1})
	p.Subscribe(open, []uint64{1})
	if got := states(shut.take()); !slices.Equal(got, []codec.PresenceState{codec.PresenceHidden}) {
		t.Fatalf("hidden watcher got %v", got)
	}
	if got := states(open.take()); !slices.Equal(got, []codec.PresenceState{codec.PresenceOnline}) {
		t.Fatalf("other watcher got %v", got)
	}
	// Going offline: only the other watcher hears of it.
	o.set(1, false)
	p.Changed(1, uint64(time.Now().UnixMilli()))
	p.Tick()
	if got := shut.take(); len(got) != 0 {
		t.Fatalf("hidden watcher got %+v", got)
	}
	if got := open.take(); len(got) != 1 || got[0].State != codec.PresenceOffline || got[0].LastSeen == 0 {
		t.Fatalf("other watcher got %+v", got)
	}
	// Unhidden: the watcher gets the real state, the other nothing.
	mu.Lock()
	blocked[shut] = false
	mu.Unlock()
	p.Changed(1, 0)
	p.Tick()
	if got := shut.take(); len(got) != 1 || got[0].State != codec.PresenceOffline || got[0].LastSeen == 0 {
		t.Fatalf("unhidden watcher got %+v", got)
	}
	if got := open.take(); len(got) != 0 {
		t.Fatalf("other watcher got %+v", got)
	}
}

// TestDelete: Delete removes the stored record, and no later tick writes
// a last-seen time for a user Deleted reports.
func TestDelete(t *testing.T) {
	db := openMem(t, vfs.NewMem())
	t.Cleanup(func() { db.Close() })
	o := &online{on: map[uint64]bool{}}
	var gone sync.Map
	p := New[*watcher](db, Config{Interval: time.Hour, Online: o.lookup,
		Deleted: func(u uint64) bool { _, ok := gone.Load(u); return ok }})
	t.Cleanup(p.Close)
	if err := p.SetPrivacy(1, codec.PrivacyHideLastSeen); err != nil {
		t.Fatal(err)
	}
	p.Changed(1, 1234)
	p.Tick()
	if last, priv := p.Read(1); last != 1234 || priv != codec.PrivacyHideLastSeen {
		t.Fatalf("before: %d %v", last, priv)
	}
	gone.Store(uint64(1), true)
	p.Changed(1, 5678) // the session's end, after the deletion began
	if err := p.Delete(1); err != nil {
		t.Fatal(err)
	}
	p.Tick()
	if last, priv := p.Read(1); last != 0 || priv != 0 {
		t.Fatalf("after: %d %v", last, priv)
	}
}

// TestHideAcrossNodes: user 1's home relays, with its state, whom user 1
// hides from; the watching node shows it hidden to those watchers only,
// and a change of the list alone (same state) reaches them at the next
// tick.
func TestHideAcrossNodes(t *testing.T) {
	var mu sync.Mutex
	blocked := map[uint64]bool{} // whom user 1 hides from
	list := func(user uint64) []uint64 {
		mu.Lock()
		defer mu.Unlock()
		var out []uint64
		for u, on := range blocked {
			if on && user == 1 {
				out = append(out, u)
			}
		}
		slices.Sort(out)
		return out
	}
	viewers := map[*watcher]uint64{}
	viewer := func(w *watcher) uint64 { return viewers[w] }

	// The watching node: user 1 is remote; what its home relays arrives
	// through relayed.
	relayed := make(chan []Update, 8)
	db := openMem(t, vfs.NewMem())
	t.Cleanup(func() { db.Close() })
	node := New[*watcher](db, Config{Interval: time.Hour, Online: func(uint64) bool { return false },
		Remote: func(u uint64) bool { return u == 1 }, Watch: func(uint64, bool) {}})
	t.Cleanup(node.Close)
	node.HideFrom(Hiding[*watcher]{Viewer: viewer})

	home, o := startMem(t)
	home.cfg.Relay = func(_ string, us []Update) { relayed <- us }
	home.HideFrom(Hiding[*watcher]{List: list, Viewer: viewer})
	o.set(1, true)

	shut, open := &watcher{}, &watcher{}
	viewers[shut], viewers[open] = 20, 30
	mu.Lock()
	blocked[20] = true
	mu.Unlock()
	node.Subscribe(shut, []uint64{1})
	node.Subscribe(open, []uint64{1})
	home.WatchFrom("n2", 1, 1, true)
	relay := func() {
		t.Helper()
		home.Tick()
		select {
		case us := <-relayed:
			node.Heard(us)
		default:
			t.Fatal("the home relayed nothing")
		}
		node.Tick()
	}
	relay()
	if got := states(shut.take()); !slices.Equal(got, []codec.PresenceState{codec.PresenceHidden}) {
		t.Fatalf("the blocked watcher got %v", got)
	}
	if got := states(open.take()); !slices.Equal(got, []codec.PresenceState{codec.PresenceOnline}) {
		t.Fatalf("the other watcher got %v", got)
	}

	// Unblocked: only the list changed, and the update goes again.
	mu.Lock()
	blocked[20] = false
	mu.Unlock()
	home.Changed(1, 0)
	relay()
	if got := states(shut.take()); !slices.Equal(got, []codec.PresenceState{codec.PresenceOnline}) {
		t.Fatalf("the unblocked watcher got %v", got)
	}
	if got := open.take(); len(got) != 0 {
		t.Fatalf("the other watcher got %+v", got)
	}

	// Blocked again while watching.
	mu.Lock()
	blocked[20] = true
	mu.Unlock()
	home.Changed(1, 0)
	relay()
	if got := states(shut.take()); !slices.Equal(got, []codec.PresenceState{codec.PresenceHidden}) {
		t.Fatalf("the blocked watcher got %v", got)
	}
	if got := open.take(); len(got) != 0 {
		t.Fatalf("the other watcher got %+v", got)
	}
}
