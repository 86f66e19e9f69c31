package server

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// hist is a latency histogram the message path can feed: Observe is a
// short scan of the bounds and two atomic adds, with no lock and no
// allocation, so it may run per message on any goroutine. Buckets are
// kept per bucket (not cumulative) and added up only when scraped.
//
// A scrape reads the buckets one by one while observations go on, so the
// counts it reports may be a few observations apart from each other and
// from the sum; the count it reports is the buckets' total, so _count
// and the +Inf bucket always agree.
//
// Rejected: prometheus.Histogram. It is lock-free too, but every
// observation goes through an interface and float arithmetic on two hot
// and cold shards, and the rest of the server's metrics are read from
// atomics at scrape time (metrics.go); this keeps one way.
type hist struct {
	bounds []time.Duration // upper bounds, ascending; one more bucket holds the rest (+Inf)
	counts []atomic.Uint64 // len(bounds)+1
	sum    atomic.Int64    // nanoseconds
}

func newHist(bounds []time.Duration) *hist {
	for i := 1; i < len(bounds); i++ {
		if bounds[i] <= bounds[i-1] {
			panic("server: histogram bounds not ascending")
		}
	}
	return &hist{bounds: bounds, counts: make([]atomic.Uint64, len(bounds)+1)}
}

// Observe records one latency. A negative one (a clock stepped back)
// counts as zero.
func (h *hist) Observe(d time.Duration) {
	d = max(d, 0)
	i := 0
	for i < len(h.bounds) && d > h.bounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
}

// metric is the histogram as Prometheus exposes it: cumulative buckets
// whose upper bounds are in seconds.
func (h *hist) metric(d *prometheus.Desc, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(h.bounds))
	var n uint64
	for i, b := range h.bounds {
		n += h.counts[i].Load()
		buckets[b.Seconds()] = n
	}
	n += h.counts[len(h.bounds)].Load()
	return prometheus.MustNewConstHistogram(d, n, time.Duration(h.sum.Load()).Seconds(), buckets, labels...)
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
