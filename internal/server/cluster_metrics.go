package server

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Cluster metrics, emitted only by a node of a cluster.
var (
	mHop = prometheus.NewDesc("chatd_cluster_request_seconds",
		"Round trips of requests to other nodes (stores, reads, acks, receipts, accounts, attaches).", nil, nil)
	mClusterNodes = newDesc("chatd_cluster_nodes", "Nodes this node has heard from, by state.", prometheus.GaugeValue, "state")
	mDirectory    = newDesc("chatd_cluster_directory_total", "Session directory operations and their failures, by kind.", prometheus.CounterValue, "kind")
	mRequests     = newDesc("chatd_cluster_requests_total", "Requests between nodes, by outcome (failed: no answer in time; busy: refused, too many in flight).", prometheus.CounterValue, "outcome")
	mQueued       = newDesc("chatd_cluster_queued", "Directory writes and receipts waiting to go to other nodes, by kind.", prometheus.GaugeValue, "kind")
	mStaleImports = newDesc("chatd_cluster_stale_imports_total", "Shard-move imports and unimports dropped at the new owner: they waited for the one before them longer than their sender waits (it sends them again).", prometheus.CounterValue)
	mPushRepairs  = newDesc("chatd_cluster_push_repairs_total", "Empty pushes naming the last seq, sent to sessions on other nodes once their pushes went quiet (a lost final push is then drained).", prometheus.CounterValue)
)

func (m metrics) describeCluster(ch chan<- *prometheus.Desc) {
	ch <- mHop
	for _, d := range []desc{mClusterNodes, mDirectory, mRequests, mQueued, mPushRepairs} {
		ch <- d.d
	}
}

func (m metrics) collectCluster(ch chan<- prometheus.Metric) {
	s := m.s
	if s.cl == nil {
		return
	}
	emit := func(d desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d.d, d.t, v, labels...)
	}
	h := s.cl.node.Hops()
	buckets := make(map[float64]uint64, len(h.Bounds))
	for i, b := range h.Bounds {
		buckets[b.Seconds()] = h.Cumulative[i]
	}
	ch <- prometheus.MustNewConstHistogram(mHop, h.Count, h.Sum.Seconds(), buckets)
	st := s.cl.node.Status()
	live := 0
	for _, n := range st.Nodes {
		if n.Live {
			live++
		}
	}
	emit(mClusterNodes, float64(live), "live")
	emit(mClusterNodes, float64(len(st.Nodes)-live), "dead")
	d := st.Directory
	for kind, v := range map[string]uint64{
		"claims": d.Claims, "cas_retries": d.CASRetries, "lost_races": d.LostRaces, "failures": d.Failures,
		"claims_not_written": s.cl.counters.claimFailures.Load(), "releases_dropped": s.cl.counters.releasesDropped.Load(),
		"heartbeats_not_written": d.HeartbeatMisses, "kicks_out": d.KicksOut, "kicks_in": d.KicksIn, "kicks_unanswered": d.KicksUnanswered,
		"watch_restarts": d.WatchRestarts,
	} {
		emit(mDirectory, float64(v), kind)
	}
	r := st.Requests
	for outcome, v := range map[string]uint64{"answered": r.Out, "failed": r.Failed, "busy": r.Busy, "served": r.In} {
		emit(mRequests, float64(v), outcome)
	}
	emit(mQueued, float64(len(s.cl.releases)), "directory_releases")
	emit(mQueued, float64(s.cl.counters.claimsQueued.Load()), "directory_claims")
	emit(mPushRepairs, float64(s.counters.pushRepairs.Load()))
	emit(mStaleImports, float64(s.counters.staleImports.Load()))
	if s.rm != nil {
		emit(mQueued, float64(len(s.rm.receipts)), "receipts")
	}
}
