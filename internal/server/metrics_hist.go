package server

import (
	"time"

	"github.com/chatd/chatd/internal/latency"
	"github.com/prometheus/client_golang/prometheus"
)

// newHist is a latency histogram the message path may feed per message
// (package latency: atomics only).
func newHist(bounds []time.Duration) *latency.Hist { return latency.New(bounds) }

// histMetric is h as Prometheus exposes it: cumulative buckets whose
// upper bounds are in seconds.
func histMetric(h *latency.Hist, d *prometheus.Desc, labels ...string) prometheus.Metric {
	snap := h.Snapshot()
	buckets := make(map[float64]uint64, len(snap.Bounds))
	for i, b := range snap.Bounds {
		buckets[b.Seconds()] = snap.Cumulative[i]
	}
	return prometheus.MustNewConstHistogram(d, snap.Count, snap.Sum.Seconds(), buckets, labels...)
}

// Bucket bounds. Disk syncs and the SEND-to-SENT round trip are
// sub-millisecond on a fast SSD and seconds on a saturated disk; logins
// hash a password for tens of milliseconds; a delivery waits for as long
// as its recipient stays offline, up to the inbox TTL (30 days).
var (
	diskBounds = []time.Duration{
		100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
		time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond,
		25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
		500 * time.Millisecond, time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
	}
	loginBounds = []time.Duration{
		time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond,
		25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
		500 * time.Millisecond, time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
	}
	deliveryBounds = []time.Duration{
		time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond,
		25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
		500 * time.Millisecond, time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
		30 * time.Second, time.Minute, 5 * time.Minute, 15 * time.Minute, time.Hour, 3 * time.Hour,
		12 * time.Hour, 24 * time.Hour, 3 * 24 * time.Hour, 7 * 24 * time.Hour, 30 * 24 * time.Hour,
	}
)

// monoBase anchors mono: time.Since on a reading that carries the
// monotonic clock reads only that clock (one vDSO call, no wall time).
var monoBase = time.Now()

// mono is a monotonic clock reading in nanoseconds, for latencies whose
// start and end are stamped on different goroutines.
func mono() int64 { return int64(time.Since(monoBase)) }
