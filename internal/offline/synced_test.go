package offline

import (
	"sync"
	"testing"
	"time"
)

// TestSyncedReportsCommitToDurable: Config.Synced hears of each batch
// once, after its sync returned, with at least the time the sync was held.
func TestSyncedReportsCommitToDurable(t *testing.T) {
	e := newMemEnv()
	entered, release := make(chan time.Time, 1), make(chan struct{})
	var held time.Duration
	e.beforeSync = func(*memBatch) error {
		start := time.Now()
		entered <- start
		<-release
		held = time.Since(start)
		return nil
	}
	var mu sync.Mutex
	var got []time.Duration
	in, rec := openMem(t, e, Config{Lanes: 1, Synced: func(d time.Duration) {
		mu.Lock()
		got = append(got, d)
		mu.Unlock()
	}})
	if err := in.Submit(msg(1, 2, 1, "hi")); err != nil {
		t.Fatal(err)
	}
	start := <-entered
	// Hold the sync until the clock has visibly moved, so a report that
	// ignored the wait (or timed the apply only) would fall short.
	for time.Since(start) < 5*time.Millisecond {
		time.Sleep(time.Millisecond)
	}
	close(release)
	if out := rec.wait(t, 1); out[0].Err != nil {
		t.Fatal(out[0].Err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0] < held {
		t.Fatalf("Synced reported %v; the sync was held %v", got, held)
	}
}
