package push

import (
	"sync/atomic"
	"time"

	"github.com/chatd/chatd/internal/latency"
)

// Reasons a job failed for good, as chatd_push_failures_total labels them.
const (
	FailRejected    = "rejected"     // the push service answered 4xx (not 404, 410 or 429) or a redirect
	FailRateLimited = "rate_limited" // still 429 after every attempt
	FailServer      = "server_error" // still 5xx after every attempt
	FailNetwork     = "network"      // no answer (refused, reset, timed out) after every attempt
	FailRefused     = "refused"      // the endpoint resolved to an address the policy forbids
	FailEncrypt     = "encrypt"      // the request could not be built (a bad subscription key)
	FailRetryFull   = "retry_full"   // too many jobs already waiting to retry
)

// FailReasons lists every reason, in a fixed order.
var FailReasons = []string{FailRejected, FailRateLimited, FailServer, FailNetwork, FailRefused, FailEncrypt, FailRetryFull}

// pushBounds: the coalescing window (2 s) and a push service's answer
// make most pushes take seconds; retries make some take minutes.
var pushBounds = []time.Duration{
	10 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second, 2 * time.Second, 2500 * time.Millisecond, 3 * time.Second,
	5 * time.Second, 10 * time.Second, 30 * time.Second, time.Minute, 5 * time.Minute, 15 * time.Minute, time.Hour,
}

type stats struct {
	opened   atomic.Uint64 // coalescing windows opened
	sent     atomic.Uint64
	failed   map[string]*atomic.Uint64
	dropped  atomic.Uint64 // subscriptions deleted on 404 or 410
	online   atomic.Uint64 // windows that closed on a user back online
	retries  atomic.Uint64
	retrying atomic.Int64
	latency  *latency.Hist
}

func (st *stats) init() {
	st.failed, st.latency = map[string]*atomic.Uint64{}, latency.New(pushBounds)
	for _, r := range FailReasons {
		st.failed[r] = new(atomic.Uint64)
	}
}

// Stats is a snapshot of the service's counters.
type Stats struct {
	Opened     uint64            // coalescing windows opened (pushes due)
	Sent       uint64            // requests a push service accepted (2xx)
	Failed     map[string]uint64 // jobs that failed for good, by reason
	Dropped    uint64            // subscriptions deleted because the push service said 404 or 410
	Online     uint64            // windows that closed on a user back online: no push
	Retries    uint64            // requests retried
	QueueDepth int               // jobs waiting for a worker or for their retry
	Users      int               // users with a subscription
}

// Stats returns the counters.
func (s *Service) Stats() Stats {
	st := Stats{Opened: s.stats.opened.Load(), Sent: s.stats.sent.Load(), Failed: map[string]uint64{}, Dropped: s.stats.dropped.Load(),
		Online: s.stats.online.Load(), Retries: s.stats.retries.Load(),
		QueueDepth: len(s.jobs) + int(s.stats.retrying.Load()), Users: s.store.Users()}
	for r, v := range s.stats.failed {
		st.Failed[r] = v.Load()
	}
	return st
}

// Latency is the histogram of pushes from the first entry's store to the
// push service's 2xx (the coalescing window included).
func (s *Service) Latency() *latency.Hist { return s.stats.latency }
