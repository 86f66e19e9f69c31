package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// Home shards. Every user and every group has a home shard, id mod
// Shards; the home shard's owner node keeps its inboxes in its Pebble and
// is their single writer. The map from shard to owner is one KV key, so
// that a change is one compare-and-set and every node sees a whole map,
// never half of a move. It is made once, when Size nodes are first live
// together (whichever node's Create lands first decides: the others read
// it), spreading the shards round-robin over the sorted node names. It
// changes only by an explicit move (Move), never by rebalancing when a
// node dies: an inbox lives on one disk, and a dead node's users wait for
// it to return.

// Shards is the number of home shards.
const Shards = 4096

// ShardOf is the home shard of a user or group id.
func ShardOf(id uint64) int { return int(id % Shards) }

// ShardMap says which node owns each shard.
type ShardMap struct {
	Nodes []string  // node names; Owner holds indexes into it
	Owner []uint8   // Shards entries
	Rev   uint64    // the KV revision it was read at
	Moved time.Time // when it last changed
	_     [0]func() // not comparable
}

type shardMapValue struct {
	Nodes []string `json:"nodes"`
	Owner []uint8  `json:"owner"` // base64 in JSON
	Moved int64    `json:"moved"`
}

const shardMapKey = "map"

// OwnerOf is the node that owns shard.
func (m *ShardMap) OwnerOf(shard int) string { return m.Nodes[m.Owner[shard]] }

// Count is how many shards each node owns.
func (m *ShardMap) Count() map[string]int {
	out := map[string]int{}
	for _, o := range m.Owner {
		out[m.Nodes[o]]++
	}
	return out
}

// shardMap caches the latest map, safe for concurrent use. A map is never
// changed once made, so readers (every message that may cross nodes) take
// it with one atomic load.
type shardMap struct {
	m     atomic.Pointer[ShardMap]
	ready chan struct{} // closed when the first map is known
}

// Shards returns the current map, or false before one exists.
func (n *Node) Shards() (*ShardMap, bool) {
	m := n.shardm.m.Load()
	return m, m != nil
}

// Home is the node that owns id's home shard ("" before a map exists).
func (n *Node) Home(id uint64) string {
	m, ok := n.Shards()
	if !ok {
		return ""
	}
	return m.OwnerOf(ShardOf(id))
}

// WaitShards waits for the shard map until ctx ends.
func (n *Node) WaitShards(ctx context.Context) (*ShardMap, error) {
	select {
	case <-n.shardm.ready:
		m, _ := n.Shards()
		return m, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("cluster: no shard map yet (%d of %d nodes live): %w", len(n.LiveNodes()), n.cfg.Size, ctx.Err())
	}
}

// ReadShards reads the shard map from its bucket (not the watch's copy,
// which may lag behind a change made on another node) and keeps it.
func (n *Node) ReadShards(ctx context.Context) (*ShardMap, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.OpTimeout)
	defer cancel()
	e, err := n.shards.Get(ctx, shardMapKey)
	if err != nil {
		return nil, n.failed(err)
	}
	m, err := decodeShardMap(e)
	if err != nil {
		return nil, err
	}
	n.setShards(m)
	if cur, _ := n.Shards(); cur != nil && cur.Rev > m.Rev {
		return cur, nil
	}
	return m, nil
}

// setShards keeps m if it is newer than the map held (the watch and Move
// may deliver one map twice, in either order).
func (n *Node) setShards(m *ShardMap) {
	for {
		old := n.shardm.m.Load()
		if old != nil && m.Rev <= old.Rev {
			return
		}
		if n.shardm.m.CompareAndSwap(old, m) {
			if old == nil {
				close(n.shardm.ready)
			}
			return
		}
	}
}

func decodeShardMap(e jetstream.KeyValueEntry) (*ShardMap, error) {
	var v shardMapValue
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		return nil, fmt.Errorf("cluster: shard map: %w", err)
	}
	if len(v.Owner) != Shards || len(v.Nodes) == 0 {
		return nil, fmt.Errorf("cluster: shard map has %d shards and %d nodes", len(v.Owner), len(v.Nodes))
	}
	for _, o := range v.Owner {
		if int(o) >= len(v.Nodes) {
			return nil, errors.New("cluster: shard map names a node it does not list")
		}
	}
	return &ShardMap{Nodes: v.Nodes, Owner: v.Owner, Rev: e.Revision(), Moved: time.UnixMilli(v.Moved)}, nil
}

func encodeShardMap(m *ShardMap, now time.Time) []byte {
	b, _ := json.Marshal(shardMapValue{Nodes: m.Nodes, Owner: m.Owner, Moved: now.UnixMilli()})
	return b
}

// initialMap spreads the shards round-robin over nodes (sorted).
func initialMap(nodes []string) *ShardMap {
	nodes = slices.Sorted(slices.Values(nodes))
	m := &ShardMap{Nodes: nodes, Owner: make([]uint8, Shards)}
	for i := range m.Owner {
		m.Owner[i] = uint8(i % len(nodes))
	}
	return m
}

// watchShards keeps the cached map current until Close. While there is
// none, each tick it tries to make the first one if Size nodes are live.
func (n *Node) watchShards() {
	n.keepWatching(func(ctx context.Context) (jetstream.KeyWatcher, error) { return n.shards.Watch(ctx, shardMapKey) },
		func(e jetstream.KeyValueEntry, _ bool) {
			m, err := decodeShardMap(e)
			if err != nil {
				n.log.Error("shard map unreadable", zap.Error(err))
				return
			}
			n.setShards(m)
		},
		func() {
			if _, ok := n.Shards(); !ok {
				n.makeFirstMap()
			}
		})
}

// makeFirstMap creates the map if Size nodes are live. Create fails for
// every node but the first; the watch then brings the winner's map.
func (n *Node) makeFirstMap() {
	live := n.LiveNodes()
	if len(live) < n.cfg.Size {
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.OpTimeout)
	defer cancel()
	_, err := n.shards.Create(ctx, shardMapKey, encodeShardMap(initialMap(live), time.Now()))
	if err == nil {
		n.log.Info("made the shard map", zap.Strings("nodes", live))
	}
}

// Move gives shard to node with a compare-and-set on the map read at
// from.Rev, and returns the new map. The caller has copied the shard's
// data to node first (chatd cluster move-shard); a concurrent change to
// the map fails the move rather than undo it.
func (n *Node) Move(ctx context.Context, from *ShardMap, shard int, node string) (*ShardMap, error) {
	if shard < 0 || shard >= Shards {
		return nil, fmt.Errorf("cluster: no shard %d", shard)
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.OpTimeout)
	defer cancel()
	m := &ShardMap{Nodes: slices.Clone(from.Nodes), Owner: slices.Clone(from.Owner)}
	i := slices.Index(m.Nodes, node)
	if i < 0 {
		if len(m.Nodes) == 255 {
			return nil, errors.New("cluster: the shard map lists 255 nodes already")
		}
		m.Nodes, i = append(m.Nodes, node), len(m.Nodes)
	}
	m.Owner[shard] = uint8(i)
	now := time.Now()
	rev, err := n.shards.Update(ctx, shardMapKey, encodeShardMap(m, now), from.Rev)
	if err != nil {
		if isConflict(err) {
			return nil, fmt.Errorf("cluster: the shard map changed since it was read (revision %d): %w", from.Rev, err)
		}
		return nil, n.failed(err)
	}
	m.Rev, m.Moved = rev, now
	n.setShards(m)
	return m, nil
}
