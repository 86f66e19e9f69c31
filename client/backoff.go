package client

import (
	"math/rand/v2"
	"time"
)

// Backoff computes reconnect delays: exponential growth from Min to Max,
// with random jitter so that clients dropped together (a server restart)
// do not come back together. With Jitter the delay is uniform in
// [d/2, d] ("equal jitter"): spread out, but never near zero.
type Backoff struct {
	Min, Max time.Duration
	Jitter   bool
	attempt  int
}

// DefaultBackoff starts at 100 ms and caps at 30 s, with jitter.
func DefaultBackoff() Backoff {
	return Backoff{Min: 100 * time.Millisecond, Max: 30 * time.Second, Jitter: true}
}

// Next returns the delay before the next attempt and advances the count.
func (b *Backoff) Next() time.Duration {
	min, max := b.Min, b.Max
	if min <= 0 {
		min = 100 * time.Millisecond
	}
	if max < min {
		max = min
	}
	d := min << min64(b.attempt, 30)
	if d > max || d <= 0 {
		d = max
	}
	b.attempt++
	if b.Jitter {
		d = d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
	}
	return d
}

// AtLeast makes the next delay at least d (a server's GOAWAY retry-after),
// still jittered upward so that the herd spreads.
func (b *Backoff) AtLeast(d time.Duration) time.Duration {
	n := b.Next()
	if n < d {
		n = d
		if b.Jitter {
			n += time.Duration(rand.Int64N(int64(d) + 1))
		}
	}
	return n
}

// Reset starts over after a successful connection.
func (b *Backoff) Reset() { b.attempt = 0 }

func min64(a, b int) int {
	if a < b {
		return a
	}
	return b
}
