package server

import (
	"sync"
	"time"
)

// fetchLimiter bounds KEYS_FETCH per (requester, target) pair: each
// fetch may spend one of the target's one-time prekeys, so a client that
// fetched in a loop would drain them and push everyone else onto the
// last-resort key (Signal: 6 per 10 minutes per pair of devices). Counts
// live in fixed windows and are dropped with the window, so memory holds
// only the current window's pairs; a burst across a window's edge may
// reach twice the limit.
type fetchLimiter struct {
	limit  int
	window time.Duration

	mu    sync.Mutex
	start time.Time
	pairs map[[2]uint64]int
}

func newFetchLimiter(limit int, window time.Duration) *fetchLimiter {
	return &fetchLimiter{limit: limit, window: window, pairs: map[[2]uint64]int{}}
}

// allow records a fetch of target's keys by requester. When it is over
// the limit it returns false and how long until the window ends.
func (l *fetchLimiter) allow(requester, target uint64, now time.Time) (bool, time.Duration) {
	if l.limit <= 0 {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.start) >= l.window {
		l.start = now
		clear(l.pairs)
	}
	k := [2]uint64{requester, target}
	if l.pairs[k] >= l.limit {
		return false, l.start.Add(l.window).Sub(now)
	}
	l.pairs[k]++
	return true, 0
}
