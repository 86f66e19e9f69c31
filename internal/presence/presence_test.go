package presence

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Pebble's process-wide cache cleaner outlives each DB.
		goleak.IgnoreAnyFunction("github.com/cockroachdb/pebble/v2/internal/cache.(*Cache).runCleaner"))
}

// watcher is a fake connection: it records the frames queued on it and
// counts flushes.
type watcher struct {
	mu      sync.Mutex
	queued  int // frames queued since the last flush
	frames  []*codec.Presence
	flushes int
}

func (w *watcher) Write(frame []byte) bool {
	f, err := codec.Decode(frame)
	if err != nil {
		panic(err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.frames = append(w.frames, f.(*codec.Presence))
	w.queued++
	return w.queued == 1
}

func (w *watcher) Flush() {
	w.mu.Lock()
	w.queued = 0
	w.flushes++
	w.mu.Unlock()
}

// take returns and forgets the frames queued so far.
func (w *watcher) take() []*codec.Presence {
	w.mu.Lock()
	defer w.mu.Unlock()
	f := w.frames
	w.frames = nil
	return f
}

// online is a fake session table.
type online struct {
	mu sync.Mutex
	on map[uint64]bool
}

func (o *online) set(u uint64, on bool) {
	o.mu.Lock()
	o.on[u] = on
	o.mu.Unlock()
}

func (o *online) lookup(u uint64) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.on[u]
}

func openMem(t *testing.T, fs vfs.FS) *pebble.DB {
	t.Helper()
	db, err := pebble.Open("", &pebble.Options{FS: fs, Logger: quiet{}})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// quiet drops Pebble's replay messages; Fatalf still fails loudly.
type quiet struct{}

func (quiet) Infof(string, ...any)              {}
func (quiet) Errorf(string, ...any)             {}
func (quiet) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }

// start returns a tracker whose ticks only the test runs.
func start(t *testing.T, db *pebble.DB) (*Tracker[*watcher], *online) {
	t.Helper()
	o := &online{on: map[uint64]bool{}}
	p := New[*watcher](db, Config{Interval: time.Hour, Online: o.lookup})
	t.Cleanup(p.Close)
	return p, o
}

// startMem is start on a fresh in-memory database, closed after the
// tracker when the test ends.
func startMem(t *testing.T) (*Tracker[*watcher], *online) {
	t.Helper()
	db := openMem(t, vfs.NewMem())
	t.Cleanup(func() { db.Close() })
	return start(t, db)
}

func states(fs []*codec.Presence) []codec.PresenceState {
	var out []codec.PresenceState
	for _, f := range fs {
		out = append(out, f.State)
	}
	return out
}

// TestSubscribeAnswersAtOnce: a new watcher hears the current state of
// each user at once, and Subscribe reports only users it did not watch.
func TestSubscribeAnswersAtOnce(t *testing.T) {
	p, o := startMem(t)
	o.set(1, true)
	w := &watcher{}
	if added := p.Subscribe(w, []uint64{1, 2}); len(added) != 2 {
		t.Fatalf("added %v", added)
	}
	got := w.take()
	if len(got) != 2 || got[0].User != 1 || got[0].State != codec.PresenceOnline ||
		got[1].User != 2 || got[1].State != codec.PresenceOffline || got[1].LastSeen != 0 {
		t.Fatalf("%+v", got)
	}
	if added := p.Subscribe(w, []uint64{2, 3}); len(added) != 1 || added[0] != 3 {
		t.Fatalf("second subscribe added %v", added)
	}
}

// TestNeverRepeats: a user who flaps between ticks and is back where she
// was costs her watchers nothing; a real change goes out once, and the
// watcher is flushed once for it.
func TestNeverRepeats(t *testing.T) {
	p, o := startMem(t)
	o.set(1, true)
	w := &watcher{}
	p.Subscribe(w, []uint64{1})
	w.Flush() // the caller's flush after SUBSCRIBE
	w.take()
	for i := 0; i < 20; i++ {
		o.set(1, false)
		p.Changed(1, uint64(1000+i))
		o.set(1, true)
		p.Changed(1, 0)
		p.Tick()
	}
	if got := w.take(); len(got) != 0 {
		t.Fatalf("%d updates while the user was online at every tick: %v", len(got), states(got))
	}
	o.set(1, false)
	p.Changed(1, 5000)
	flushes := w.flushes
	p.Tick()
	p.Tick()
	if got := w.take(); len(got) != 1 || got[0].State != codec.PresenceOffline || got[0].LastSeen != 5000 {
		t.Fatalf("after going offline: %+v", got)
	}
	if w.flushes != flushes+1 {
		t.Fatalf("%d flushes for one update", w.flushes-flushes)
	}
}

// TestHiddenAndForget: hiding last seen shows "hidden" whatever the state,
// and a watcher that forgot a user hears no more of it.
func TestHiddenAndForget(t *testing.T) {
	p, o := startMem(t)
	o.set(1, true)
	w, v := &watcher{}, &watcher{}
	p.Subscribe(w, []uint64{1})
	p.Subscribe(v, []uint64{1})
	w.Flush()
	v.Flush()
	w.take()
	v.take()
	if err := p.SetPrivacy(1, codec.PrivacyHideLastSeen); err != nil {
		t.Fatal(err)
	}
	p.Tick()
	if got := w.take(); len(got) != 1 || got[0].State != codec.PresenceHidden || got[0].LastSeen != 0 {
		t.Fatalf("hidden: %+v", got)
	}
	v.take()
	p.Forget(v, []uint64{1})
	if err := p.SetPrivacy(1, 0); err != nil {
		t.Fatal(err)
	}
	p.Tick()
	if got := w.take(); len(got) != 1 || got[0].State != codec.PresenceOnline {
		t.Fatalf("shown again: %+v", got)
	}
	if got := v.take(); len(got) != 0 {
		t.Fatalf("forgotten watcher was sent %v", states(got))
	}
}

// TestLastSeenSurvivesRestart: Close writes the pending last-seen time,
// and a tracker on the reopened database reads it with the flags.
func TestLastSeenSurvivesRestart(t *testing.T) {
	fs := vfs.NewMem()
	db := openMem(t, fs)
	o := &online{on: map[uint64]bool{}}
	p := New[*watcher](db, Config{Interval: time.Hour, Online: o.lookup})
	if err := p.SetPrivacy(7, codec.PrivacyHideLastSeen); err != nil {
		t.Fatal(err)
	}
	p.Changed(7, 123456)
	p.Close()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openMem(t, fs)
	defer db.Close()
	p2, _ := start(t, db)
	if last, priv := p2.Read(7); last != 123456 || priv != codec.PrivacyHideLastSeen {
		t.Fatalf("after restart: last seen %d, privacy %d", last, priv)
	}
}

// TestPrivacySurvivesTick runs SetPrivacy while the tick is between
// reading the user's flags and writing her last-seen time: the tick must
// not write the old flags back.
func TestPrivacySurvivesTick(t *testing.T) {
	p, _ := startMem(t)
	p.Changed(1, 777) // a last-seen time for the tick to write

	errc := make(chan error, 1)
	hook := func() {
		go func() { errc <- p.SetPrivacy(1, codec.PrivacyHideLastSeen) }()
		// Give SetPrivacy every chance to land inside the tick's
		// read-modify-write: it must wait for the tick instead.
		deadline := time.Now().Add(time.Second)
		for time.Now().Before(deadline) {
			if _, priv := p.Read(1); priv != 0 {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	p.testHookRead.Store(&hook)
	p.Tick()
	p.testHookRead.Store(nil)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if last, priv := p.Read(1); priv != codec.PrivacyHideLastSeen || last != 777 {
		t.Fatalf("stored last seen %d, privacy %d: want both", last, priv)
	}
}
