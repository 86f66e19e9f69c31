package cluster

import (
	"context"
	"encoding/json"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// Liveness: each node puts its heartbeat key (its name) in the nodes
// bucket once per Heartbeat, and every node watches the bucket. A node is
// live while its last heartbeat arrived less than three heartbeats ago by
// the watcher's own monotonic clock (so clock skew between machines does
// not matter). A directory entry on a dead node reads as offline: when a
// node dies nothing rewrites its sessions' keys; a later login
// compare-and-sets over them.

// beat is a heartbeat's value.
type beat struct {
	Since int64  `json:"since"` // when this run of the node started, Unix ms
	Addr  string `json:"addr"`  // its route address
}

// liveness is the set of nodes heard from, safe for concurrent use.
type liveness struct {
	dead time.Duration // silence after which a node reads as dead

	mu   sync.Mutex
	seen map[string]nodeSeen
}

type nodeSeen struct {
	at   time.Time // local receipt of the last heartbeat (monotonic)
	beat beat
}

func (l *liveness) init(dead time.Duration) {
	l.dead, l.seen = dead, map[string]nodeSeen{}
}

func (l *liveness) heard(node string, b beat, at time.Time) {
	l.mu.Lock()
	l.seen[node] = nodeSeen{at: at, beat: b}
	l.mu.Unlock()
}

// alive reports whether node was heard from within the dead interval.
func (l *liveness) alive(node string, now time.Time) bool {
	l.mu.Lock()
	s, ok := l.seen[node]
	l.mu.Unlock()
	return ok && now.Sub(s.at) < l.dead
}

// snapshot lists every node heard from since start, sorted by name.
func (l *liveness) snapshot(now time.Time) []NodeStatus {
	l.mu.Lock()
	out := make([]NodeStatus, 0, len(l.seen))
	for name, s := range l.seen {
		out = append(out, NodeStatus{Name: name, Addr: s.beat.Addr, Live: now.Sub(s.at) < l.dead,
			LastHeard: now.Sub(s.at).Round(time.Millisecond), Since: time.UnixMilli(s.beat.Since).UTC()})
	}
	l.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Started is when node's current run began, as its heartbeats say (zero
// before one was heard): a change means the node restarted and lost what
// it kept in memory.
func (n *Node) Started(node string) time.Time {
	n.live.mu.Lock()
	defer n.live.mu.Unlock()
	if s, ok := n.live.seen[node]; ok {
		return time.UnixMilli(s.beat.Since)
	}
	return time.Time{}
}

// Alive reports whether node has been heard from within three heartbeats.
func (n *Node) Alive(node string) bool {
	return node == n.cfg.Node || n.live.alive(node, time.Now())
}

// LiveNodes lists the nodes that read as alive, sorted.
func (n *Node) LiveNodes() []string {
	var out []string
	for _, s := range n.live.snapshot(time.Now()) {
		if s.Live || s.Name == n.cfg.Node {
			out = append(out, s.Name)
		}
	}
	return out
}

// heartbeat puts this node's key once per Heartbeat until Close. A put
// that fails (the bucket has no leader for a few seconds after a leader
// dies) is counted and tried again on the next tick; the others may read
// this node as dead meanwhile, which costs its users nothing but a
// directory lookup that says offline.
func (n *Node) heartbeat() {
	defer n.wg.Done()
	val, _ := json.Marshal(beat{Since: n.run.UnixMilli(), Addr: n.Addr()})
	t := time.NewTicker(n.cfg.Heartbeat)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(n.ctx, n.cfg.Heartbeat)
		_, err := n.nodes.Put(ctx, n.cfg.Node, val)
		cancel()
		if err != nil {
			n.counters.heartbeatFailures.Add(1)
			n.log.Debug("heartbeat not written", zap.Error(err))
		}
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
	}
}

// watchNodes follows the nodes bucket until Close. A stored heartbeat
// replayed when the watch starts may be old: it counts only if it is
// younger than the dead interval by its own timestamp (the one place
// another machine's clock is trusted, once).
func (n *Node) watchNodes() {
	n.keepWatching(func(ctx context.Context) (jetstream.KeyWatcher, error) { return n.nodes.WatchAll(ctx) },
		func(e jetstream.KeyValueEntry, replay bool) {
			var b beat
			if json.Unmarshal(e.Value(), &b) != nil {
				return
			}
			at := time.Now()
			if replay {
				age := time.Since(e.Created())
				if age >= n.live.dead {
					return
				}
				at = at.Add(-max(age, 0))
			}
			n.live.heard(e.Key(), b, at)
		}, nil)
}

// keepWatching calls put for each value the watcher start makes reports
// (replay is true for the stored values it reports first) and tick, if
// set, four times a heartbeat, until Close; a heartbeat after a watch ends
// (a bucket without a leader ends it) it starts another. It runs on a
// goroutine counted in n.wg.
func (n *Node) keepWatching(start func(context.Context) (jetstream.KeyWatcher, error),
	put func(e jetstream.KeyValueEntry, replay bool), tick func()) {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.Heartbeat / 4)
	defer t.Stop()
	for {
		ctx, cancel := context.WithCancel(n.ctx)
		if w, err := start(ctx); err == nil {
			n.follow(w, t.C, put, tick)
			w.Stop()
		}
		cancel()
		select {
		case <-n.stop:
			return
		case <-time.After(n.cfg.Heartbeat):
		}
	}
}

func (n *Node) follow(w jetstream.KeyWatcher, ticks <-chan time.Time, put func(jetstream.KeyValueEntry, bool), tick func()) {
	replay := true // until the nil marker: stored values
	for {
		select {
		case <-n.stop:
			return
		case <-ticks:
			if tick != nil {
				tick()
			}
		case e, ok := <-w.Updates():
			switch {
			case !ok:
				return
			case e == nil:
				replay = false
			case e.Operation() == jetstream.KeyValuePut:
				put(e, replay)
			}
		}
	}
}
