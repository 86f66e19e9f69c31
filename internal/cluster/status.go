package cluster

import (
	"context"
	"sync/atomic"
	"time"
)

// counters count cluster events with atomics; Status reads them.
type counters struct {
	claims, casRetries, lostRaces atomic.Uint64
	dirFailures                   atomic.Uint64 // directory or map operations that did not happen
	heartbeatFailures             atomic.Uint64
	kicksOut, kicksIn             atomic.Uint64
	kicksUnanswered               atomic.Uint64
	watchRestarts                 atomic.Uint64 // directory watches started again (ended or stalled)
	asyncErrors                   atomic.Uint64 // the NATS client's (slow consumer: dropped messages)

	requestsIn, requestsFailed, requestsBusy atomic.Uint64
}

// NodeStatus is one node as this node sees it.
type NodeStatus struct {
	Name      string        `json:"name"`
	Addr      string        `json:"addr"`
	Live      bool          `json:"live"`
	LastHeard time.Duration `json:"last_heard_ns"`
	Since     time.Time     `json:"since"`
	Shards    int           `json:"shards"`
}

// Status is what `chatd cluster status` prints.
type Status struct {
	Node        string       `json:"node"`
	Size        int          `json:"size"`
	Nodes       []NodeStatus `json:"nodes"`
	ShardMapRev uint64       `json:"shard_map_revision"` // 0: no map yet
	// DirectoryLeader is the node leading the directory's stream (its
	// writes stall for a few seconds when that node dies); "" when this
	// node could not ask within a second.
	DirectoryLeader string         `json:"directory_leader"`
	Directory       DirectoryStats `json:"directory"`
	Requests        RequestStats   `json:"requests"`
	Hops            HopHistogram   `json:"hops"` // round trips of requests to other nodes
}

// RequestStats count requests between nodes since start.
type RequestStats struct {
	Out      uint64        `json:"out"` // answered
	Failed   uint64        `json:"failed"`
	Busy     uint64        `json:"busy"` // refused: MaxInFlight out
	In       uint64        `json:"in"`
	InFlight int64         `json:"in_flight"`
	MeanTrip time.Duration `json:"mean_round_trip_ns"`
}

// DirectoryStats count directory work since start.
type DirectoryStats struct {
	Claims          uint64 `json:"claims"`
	CASRetries      uint64 `json:"cas_retries"`
	LostRaces       uint64 `json:"lost_races"`
	Failures        uint64 `json:"failures"`
	HeartbeatMisses uint64 `json:"heartbeat_failures"`
	KicksOut        uint64 `json:"kicks_out"`
	KicksIn         uint64 `json:"kicks_in"`
	KicksUnanswered uint64 `json:"kicks_unanswered"`
	WatchRestarts   uint64 `json:"watch_restarts"`
	ClientErrors    uint64 `json:"nats_client_errors"`
}

// Status reports the cluster as this node sees it.
func (n *Node) Status() Status {
	st := Status{Node: n.cfg.Node, Size: n.cfg.Size, Nodes: n.live.snapshot(time.Now())}
	if m, ok := n.Shards(); ok {
		st.ShardMapRev = m.Rev
		count := m.Count()
		for i := range st.Nodes {
			st.Nodes[i].Shards = count[st.Nodes[i].Name]
			delete(count, st.Nodes[i].Name)
		}
		for name, c := range count { // owners never heard from since start
			st.Nodes = append(st.Nodes, NodeStatus{Name: name, Shards: c})
		}
	}
	ctx, cancel := context.WithTimeout(n.ctx, time.Second)
	if str, err := n.js.Stream(ctx, "KV_"+bucketSessions); err == nil {
		if info, err := str.Info(ctx); err == nil && info.Cluster != nil {
			st.DirectoryLeader = info.Cluster.Leader
		}
	}
	cancel()
	c := &n.counters
	st.Directory = DirectoryStats{
		Claims: c.claims.Load(), CASRetries: c.casRetries.Load(), LostRaces: c.lostRaces.Load(),
		Failures: c.dirFailures.Load(), HeartbeatMisses: c.heartbeatFailures.Load(),
		KicksOut: c.kicksOut.Load(), KicksIn: c.kicksIn.Load(), KicksUnanswered: c.kicksUnanswered.Load(),
		WatchRestarts: c.watchRestarts.Load(),
		ClientErrors:  c.asyncErrors.Load(),
	}
	h := n.Hops()
	st.Hops = h
	st.Requests = RequestStats{Out: h.Count, Failed: c.requestsFailed.Load(), Busy: c.requestsBusy.Load(),
		In: c.requestsIn.Load(), InFlight: n.inflight.Load()}
	if h.Count > 0 {
		st.Requests.MeanTrip = h.Sum / time.Duration(h.Count)
	}
	return st
}
