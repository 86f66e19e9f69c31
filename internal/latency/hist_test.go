package latency

import (
	"testing"
	"time"
)

// An observation lands in the first bucket whose bound it does not
// exceed; a negative one counts as zero; the snapshot is cumulative and
// counts those beyond the last bound too.
func TestSnapshotIsCumulative(t *testing.T) {
	h := New([]time.Duration{time.Millisecond, 10 * time.Millisecond})
	for _, d := range []time.Duration{-time.Second, 0, time.Millisecond, time.Millisecond + 1, 10 * time.Millisecond, time.Hour} {
		h.Observe(d)
	}
	s := h.Snapshot()
	if len(s.Cumulative) != 2 || s.Cumulative[0] != 3 || s.Cumulative[1] != 5 || s.Count != 6 {
		t.Fatalf("cumulative %v count %d, want [3 5] 6", s.Cumulative, s.Count)
	}
	if want := time.Hour + 12*time.Millisecond + 1; s.Sum != want {
		t.Fatalf("sum %v, want %v", s.Sum, want)
	}
}
