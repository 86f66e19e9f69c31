package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/cluster"
)

// ClusterConfig shapes the cluster scenario: the route load on a cluster
// of Nodes chatd processes that the bench starts on 127.0.0.2 and up (so
// on this host: they share its cores with the load).
type ClusterConfig struct {
	RouteConfig
	Nodes int // 1-9
	// Cross puts every pair across nodes: the sender homed on and
	// connected to one node, the recipient homed on and connected to the
	// next. Otherwise every pair is local: both homed on and connected to
	// the same node, nothing crosses a node but the directory's writes.
	Cross bool
}

// ClusterResult is the route result over the whole cluster, and each
// node's share of the servers' CPU.
type ClusterResult struct {
	Nodes int          `json:"nodes"`
	Cross bool         `json:"cross"`
	Route *RouteResult `json:"route"`
	// PerNode is each node's server CPU-s per million delivered messages
	// (its own CPU over all the cluster's messages).
	PerNode []float64 `json:"node_cpu_seconds_per_million"`
	// Hops: requests between nodes during the measured time, and the
	// bounds of the round-trip histogram's buckets their p50 and p99 fall in.
	Hops     uint64        `json:"hops"`
	HopP50   time.Duration `json:"hop_p50_ns"`
	HopP99   time.Duration `json:"hop_p99_ns"`
	HopsPerM float64       `json:"hops_per_message"`
}

// Cluster runs the cluster scenario.
func Cluster(ctx context.Context, cfg Config, cc ClusterConfig) (*ClusterResult, error) {
	cfg.setDefaults()
	cc.Body = max(cc.Body, 16)
	cc.Window = max(cc.Window, 1)
	if cc.Nodes < 1 || cc.Nodes > 9 {
		return nil, fmt.Errorf("bench: cluster: 1 to 9 nodes")
	}
	if cfg.Addr != "" {
		return nil, fmt.Errorf("bench: cluster starts its own nodes: no -addr")
	}
	nodes, err := startCluster(ctx, cfg, cc.Nodes)
	for _, t := range nodes {
		defer t.stop()
	}
	if err != nil {
		return nil, err
	}
	kind := "local"
	if cc.Cross {
		kind = "cross-node"
	}
	fmt.Fprintf(os.Stderr, "cluster: %d nodes, %d %s pairs, window %d, %s, %v\n", cc.Nodes, cc.Pairs, kind, cc.Window, msgRate(cc.Rate), cc.Duration)
	conns, err := clusterPairs(ctx, cfg, cc, nodes)
	defer closeAll(conns)
	if err != nil {
		return nil, fmt.Errorf("bench: cluster setup: %w", err)
	}
	var before, after []Stats
	var hops [2]cluster.HopHistogram // summed over the nodes, before and after
	read := func(ctx context.Context) ([]Stats, Stats, error) {
		h := &hops[0]
		if before != nil {
			h = &hops[1]
		}
		for _, t := range nodes {
			if st, err := clusterStatus(ctx, t.admin); err == nil {
				addHops(h, st.Hops)
			}
		}
		var sum Stats
		all := make([]Stats, len(nodes))
		for i, t := range nodes {
			st, err := t.stats(ctx, false)
			if err != nil {
				return nil, sum, err
			}
			all[i] = st
			sum = addStats(sum, st)
		}
		return all, sum, nil
	}
	first := true
	route, err := runRoute(ctx, cfg, cc.RouteConfig, conns, func(ctx context.Context) (Stats, error) {
		all, sum, err := read(ctx)
		if first {
			before, first = all, false
		} else {
			after = all
		}
		return sum, err
	})
	if err != nil {
		return nil, err
	}
	res := &ClusterResult{Nodes: cc.Nodes, Cross: cc.Cross, Route: route, Hops: hops[1].Count - hops[0].Count,
		HopP50: hops[0].Quantile(hops[1], 0.5), HopP99: hops[0].Quantile(hops[1], 0.99)}
	if route.Delivered > 0 {
		res.HopsPerM = float64(res.Hops) / float64(route.Delivered)
	}
	for i := range nodes {
		if route.Delivered > 0 && i < len(before) && i < len(after) {
			res.PerNode = append(res.PerNode, (after[i].CPUSeconds-before[i].CPUSeconds)/float64(route.Delivered)*1e6)
		}
	}
	return res, nil
}

func clusterStatus(ctx context.Context, admin string) (cluster.Status, error) {
	var st cluster.Status
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+admin+"/cluster", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// addHops adds one node's round-trip histogram to sum.
func addHops(sum *cluster.HopHistogram, h cluster.HopHistogram) {
	if sum.Bounds == nil {
		sum.Bounds, sum.Cumulative = h.Bounds, make([]uint64, len(h.Bounds))
	}
	for i := range min(len(sum.Cumulative), len(h.Cumulative)) {
		sum.Cumulative[i] += h.Cumulative[i]
	}
	sum.Count += h.Count
	sum.Sum += h.Sum
}

// addStats sums the counters that add up across nodes.
func addStats(a, b Stats) Stats {
	a.Connections += b.Connections
	a.Sessions += b.Sessions
	a.RSS += b.RSS
	a.FramesIn += b.FramesIn
	a.BytesIn += b.BytesIn
	a.BytesOut += b.BytesOut
	a.Stored += b.Stored
	a.Pushed += b.Pushed
	a.Acked += b.Acked
	a.CPUSeconds += b.CPUSeconds
	a.Syscalls += b.Syscalls
	a.ContextSwitches += b.ContextSwitches
	a.Turns += b.Turns
	a.InlineTurns += b.InlineTurns
	a.Writes += b.Writes
	a.LazyFlushes += b.LazyFlushes
	a.InboxCommits += b.InboxCommits
	a.InboxRecords += b.InboxRecords
	a.LiveAcked += b.LiveAcked
	return a
}

// startCluster starts n nodes on 127.0.0.2 and up and waits until every
// one is ready (the shard map made). On error the nodes started so far
// are returned for stopping.
func startCluster(ctx context.Context, cfg Config, n int) ([]*target, error) {
	dir, err := os.MkdirTemp("", "chatd-bench-cluster-")
	if err != nil {
		return nil, err
	}
	type addrs struct{ client, admin, route string }
	as := make([]addrs, n)
	var routes []string
	for i := range as {
		ip := fmt.Sprintf("127.0.0.%d", i+2)
		as[i] = addrs{freePortOn(ip), freePortOn(ip), freePortOn(ip)}
		routes = append(routes, as[i].route)
	}
	bin := cfg.Binary
	if cfg.ServerBinary != "" {
		bin = cfg.ServerBinary
	}
	var nodes []*target
	for i, a := range as {
		t := &target{addr: a.client, admin: a.admin, bin: bin}
		if i == 0 {
			t.dir = dir // removed with the first node
		}
		t.args = append([]string{"serve", "--addr", a.client, "--admin", a.admin, "--data", filepath.Join(dir, fmt.Sprintf("n%d", i+1)),
			"--noise-key", filepath.Join(dir, "noise.key"),
			"--node", fmt.Sprintf("n%d", i+1), "--cluster-listen", a.route, "--cluster-routes", strings.Join(routes, ","),
			"--cluster-size", fmt.Sprint(n),
			"--plaintext", "--argon2-memory", "64", "--argon2-time", "1", "--log-level", "warn",
			"--logins-per-source", "-1", "--failed-logins-per-user", "-1", "--max-frame-rate", "-1", "--max-byte-rate", "-1"},
			cfg.ServerArgs...)
		t.env = append(os.Environ(), "CHATD_CLUSTER_SECRET=bench-cluster-secret-0123456789")
		t.env = append(t.env, cfg.ServerEnv...)
		if err := t.launch(); err != nil { // all at once: each waits for the others
			return nodes, err
		}
		nodes = append(nodes, t)
	}
	for _, t := range nodes {
		if err := t.waitUp(ctx, time.Minute); err != nil {
			return nodes, err
		}
	}
	deadline := time.Now().Add(time.Minute)
	for _, t := range nodes {
		for !ready(ctx, t.admin) {
			if time.Now().After(deadline) {
				return nodes, fmt.Errorf("bench: node at %s not ready within a minute", t.addr)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nodes, nil
}

func ready(ctx context.Context, admin string) bool {
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+admin+"/readyz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// clusterPairs registers users until each node homes enough of them (a
// user's home is its id's shard's owner: on a fresh cluster shard s is
// owned by node s mod n), then logs each pair's users in on the nodes
// the mode wants. It returns the connections sender, receiver, ...
func clusterPairs(ctx context.Context, cfg Config, cc ClusterConfig, nodes []*target) ([]*rawConn, error) {
	n := len(nodes)
	need := make([]int, n) // users wanted homed on each node
	for p := range cc.Pairs {
		a := p % n
		need[a]++
		if cc.Cross {
			need[(a+1)%n]++
		} else {
			need[a]++
		}
	}
	homed := make([][]string, n)
	run := fmt.Sprintf("c%d-", time.Now().UnixNano()%1e6)
	for batch := 0; ; batch++ {
		short := 0
		for i := range need {
			short += max(0, need[i]-len(homed[i]))
		}
		if short == 0 {
			break
		}
		if batch > 20 {
			return nil, fmt.Errorf("could not home enough users on every node")
		}
		size := short*n + 8
		prefix := fmt.Sprintf("%s%d-", run, batch)
		conns, err := registerAll(ctx, nodes[0].addr, size, prefix, cfg.Noise)
		if err != nil {
			return nil, err
		}
		for i, c := range conns {
			h := int(c.w.User%4096) % n
			if len(homed[h]) < need[h] {
				homed[h] = append(homed[h], fmt.Sprintf("%s%d", prefix, i))
			}
		}
		closeAll(conns)
	}
	type slot struct {
		node int
		name string
	}
	var plan []slot
	next := make([]int, n)
	take := func(node int) slot {
		s := slot{node, homed[node][next[node]]}
		next[node]++
		return s
	}
	for p := range cc.Pairs {
		a := p % n
		b := a
		if cc.Cross {
			b = (a + 1) % n
		}
		plan = append(plan, take(a), take(b))
	}
	conns := make([]*rawConn, len(plan))
	err := parallel(ctx, len(plan), 8, func(i int) error {
		login := &codec.Login{Credentials: codec.Credentials{Name: []byte(plan[i].name), Password: []byte("bench-password")}}
		c, err := dialRaw(ctx, nodes[plan[i].node].addr, i, login, cfg.Noise)
		conns[i] = c
		return err
	})
	return conns, err
}

// Print writes the result as a table, or JSON with cfg.JSON.
func (r *ClusterResult) Print(cfg Config) {
	if printJSON(&cfg, r) {
		return
	}
	kind := "local pairs (sender and recipient homed on and connected to one node)"
	if r.Cross {
		kind = "cross-node pairs (sender and recipient on different nodes, each at its home)"
	}
	fmt.Fprintf(cfg.Out, "cluster          %d nodes, %s\n", r.Nodes, kind)
	r.Route.Print(Config{Out: cfg.Out})
	var per []string
	sum := 0.0
	for i, c := range r.PerNode {
		per = append(per, fmt.Sprintf("n%d %.1f", i+1, c))
		sum += c
	}
	fmt.Fprintf(cfg.Out, "per node         %s CPU-s per million cluster messages (sum %.1f)\n", strings.Join(per, ", "), sum)
	fmt.Fprintf(cfg.Out, "between nodes    %d requests (%.2f per message), round trip p50 <= %s, p99 <= %s (histogram bucket bounds)\n",
		r.Hops, r.HopsPerM, r.HopP50, r.HopP99)
	fmt.Fprintf(cfg.Out, "BenchmarkCluster/nodes=%d/cross=%v/pairs=%d/rate=%d 1 %.0f msgs/s %d p50-us %d p99-us %.1f cpu-s/M\n",
		r.Nodes, r.Cross, r.Route.Pairs, r.Route.Rate, r.Route.MsgsPerSec, r.Route.P50us, r.Route.P99us, sum)
}
