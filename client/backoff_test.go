package client

import (
	"testing"
	"time"
)

func TestBackoffGrowsAndCaps(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: 2 * time.Second}
	want := []time.Duration{100, 200, 400, 800, 1600, 2000, 2000}
	for i, w := range want {
		if d := b.Next(); d != w*time.Millisecond {
			t.Fatalf("attempt %d: %v, want %v", i, d, w*time.Millisecond)
		}
	}
	b.Reset()
	if d := b.Next(); d != 100*time.Millisecond {
		t.Fatalf("after reset: %v", d)
	}
}

func TestBackoffJitterSpreads(t *testing.T) {
	seen := map[time.Duration]bool{}
	for i := 0; i < 200; i++ {
		b := Backoff{Min: time.Second, Max: time.Second, Jitter: true}
		d := b.Next()
		if d < 500*time.Millisecond || d > time.Second {
			t.Fatalf("jittered delay %v outside [0.5s, 1s]", d)
		}
		seen[d] = true
	}
	if len(seen) < 100 {
		t.Fatalf("only %d distinct delays in 200 draws: clients would reconnect together", len(seen))
	}
	b := Backoff{Min: 10 * time.Millisecond, Max: time.Second, Jitter: true}
	if d := b.AtLeast(3 * time.Second); d < 3*time.Second || d > 6*time.Second {
		t.Fatalf("AtLeast(3s) = %v", d)
	}
}
