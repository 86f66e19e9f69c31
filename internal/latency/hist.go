// Package latency is the histogram the message path and the cluster's
// requests feed: Observe is a short scan of the bounds and two atomic
// adds, with no lock and no allocation, so it may run per message on any
// goroutine. Buckets are kept per bucket (not cumulative) and added up
// only when read.
//
// A read takes the buckets one by one while observations go on, so its
// counts may be a few observations apart from each other and from the
// sum; its count is the buckets' total, so the count and the last
// cumulative bucket always agree.
//
// Rejected: prometheus.Histogram. It is lock-free too, but every
// observation goes through an interface and float arithmetic on two hot
// and cold shards, and the server's other metrics are read from atomics
// at scrape time; this keeps one way.
package latency

import (
	"sync/atomic"
	"time"
)

// Hist counts latencies in fixed buckets.
type Hist struct {
	bounds []time.Duration // upper bounds, ascending; one more bucket holds the rest
	counts []atomic.Uint64 // len(bounds)+1
	sum    atomic.Int64    // nanoseconds
}

// New returns a histogram with these upper bounds, which must ascend.
func New(bounds []time.Duration) *Hist {
	for i := 1; i < len(bounds); i++ {
		if bounds[i] <= bounds[i-1] {
			panic("latency: histogram bounds not ascending")
		}
	}
	return &Hist{bounds: bounds, counts: make([]atomic.Uint64, len(bounds)+1)}
}

// Observe records one latency. A negative one (a clock stepped back)
// counts as zero.
func (h *Hist) Observe(d time.Duration) {
	d = max(d, 0)
	i := 0
	for i < len(h.bounds) && d > h.bounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
}

// Snapshot is a histogram read once: Cumulative[i] latencies were at
// most Bounds[i]; Count is every one, those beyond the last bound too.
type Snapshot struct {
	Bounds     []time.Duration `json:"bounds_ns"`
	Cumulative []uint64        `json:"cumulative"`
	Count      uint64          `json:"count"`
	Sum        time.Duration   `json:"sum_ns"`
}

// Snapshot reads h.
func (h *Hist) Snapshot() Snapshot {
	out := Snapshot{Bounds: h.bounds, Cumulative: make([]uint64, len(h.bounds))}
	var n uint64
	for i := range h.counts {
		n += h.counts[i].Load()
		if i < len(h.bounds) {
			out.Cumulative[i] = n
		}
	}
	out.Count, out.Sum = n, time.Duration(h.sum.Load())
	return out
}
