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
	p.HideFrom(func(user uint64, w *watcher) bool {
		mu.Lock()
		defer mu.Unlock()
		return user == 1 && blocked[w]
	})
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
