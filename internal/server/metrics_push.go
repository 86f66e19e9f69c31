package server

import (
	"github.com/chatd/chatd/internal/push"
	"github.com/prometheus/client_golang/prometheus"
)

// Web Push metrics (package push keeps the counters; emitted only while
// push is on).
var (
	mPushSent    = newDesc("chatd_push_sent_total", "Web Push requests a push service accepted (2xx).", prometheus.CounterValue)
	mPushFailed  = newDesc("chatd_push_failures_total", "Web Push requests that failed for good, by reason (see package push).", prometheus.CounterValue, "reason")
	mPushDropped = newDesc("chatd_push_subscriptions_dropped_total", "Push subscriptions deleted because the push service answered 404 or 410.", prometheus.CounterValue)
	mPushRetries = newDesc("chatd_push_retries_total", "Web Push requests retried (429, 5xx, network errors).", prometheus.CounterValue)
	mPushOnline  = newDesc("chatd_push_skipped_online_total", "Coalescing windows that closed on a user back online: no push.", prometheus.CounterValue)
	mPushQueue   = newDesc("chatd_push_queue_depth", "Web Push requests waiting for a worker or for their retry.", prometheus.GaugeValue)
	mPushUsers   = newDesc("chatd_push_subscribed_users", "Users with at least one push subscription.", prometheus.GaugeValue)
	mPushSeconds = newHistDesc("chatd_push_seconds", "From the first entry stored for an offline user to the push service's 2xx: the coalescing window, queueing, retries and the request.")
	pushDescs    = []desc{mPushSent, mPushFailed, mPushDropped, mPushRetries, mPushOnline, mPushQueue, mPushUsers, mPushSeconds}
)

func (m metrics) describePush(ch chan<- *prometheus.Desc) {
	for _, d := range pushDescs {
		ch <- d.d
	}
}

func (m metrics) collectPush(ch chan<- prometheus.Metric, emit func(d desc, v float64, labels ...string)) {
	p := m.s.pushes
	if p == nil {
		return
	}
	st := p.Stats()
	emit(mPushSent, float64(st.Sent))
	for _, r := range push.FailReasons {
		emit(mPushFailed, float64(st.Failed[r]), r)
	}
	emit(mPushDropped, float64(st.Dropped))
	emit(mPushRetries, float64(st.Retries))
	emit(mPushOnline, float64(st.Online))
	emit(mPushQueue, float64(st.QueueDepth))
	emit(mPushUsers, float64(st.Users))
	ch <- histMetric(p.Latency(), mPushSeconds.d)
}
