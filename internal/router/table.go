package router

import (
	"math/bits"
	"runtime"
	"sync"
)

// Table maps user ids to their live session, at most one per user. S is the
// session type (a pointer). It is sharded by user id: a lookup takes one
// shard's read lock, so routing on every core rarely meets another core,
// and a login or logout write-locks one shard only.
//
// The shard count is 4 per core, rounded up to a power of two: with k
// busy cores the chance that two of them hash to the same shard at once is
// about k^2/(2*shards) (the birthday bound), under 1/8 at 4 per core, and
// pebble's cache saw contention at 2 per core.
type Table[S comparable] struct {
	shards []shard[S]
	mask   uint64
}

type shard[S comparable] struct {
	mu sync.RWMutex
	m  map[uint64]S
	_  [32]byte // keep neighbouring shards' locks on separate cache lines
}

// NewTable returns a table with 4 shards per core.
func NewTable[S comparable]() *Table[S] { return NewWithShards[S](4 * runtime.GOMAXPROCS(0)) }

// NewWithShards returns a table with at least n shards (rounded up to a
// power of two); tests use it to force contention.
func NewWithShards[S comparable](n int) *Table[S] {
	if n < 1 {
		n = 1
	}
	n = 1 << bits.Len(uint(n-1))
	t := &Table[S]{shards: make([]shard[S], n), mask: uint64(n - 1)}
	for i := range t.shards {
		t.shards[i].m = make(map[uint64]S)
	}
	return t
}

// shardOf mixes the id first: user ids are sequential, and their low bits
// alone would put users registered together into neighbouring shards.
func (t *Table[S]) shardOf(user uint64) *shard[S] {
	h := user * 0x9E3779B97F4A7C15
	return &t.shards[(h>>32)&t.mask]
}

// Lookup returns the user's live session. It allocates nothing.
func (t *Table[S]) Lookup(user uint64) (s S, ok bool) {
	sh := t.shardOf(user)
	sh.mu.RLock()
	s, ok = sh.m[user]
	sh.mu.RUnlock()
	return s, ok
}

// Swap makes s the user's live session and returns the one it replaced,
// which the caller must close: one live session per user.
func (t *Table[S]) Swap(user uint64, s S) (old S, replaced bool) {
	sh := t.shardOf(user)
	sh.mu.Lock()
	old, replaced = sh.m[user]
	sh.m[user] = s
	sh.mu.Unlock()
	return old, replaced
}

// Remove deletes the user's entry if it is still s, and reports whether it
// was. A session that was replaced by a newer login removes nothing.
func (t *Table[S]) Remove(user uint64, s S) bool {
	sh := t.shardOf(user)
	sh.mu.Lock()
	cur, ok := sh.m[user]
	ok = ok && cur == s
	if ok {
		delete(sh.m, user)
	}
	sh.mu.Unlock()
	return ok
}

// Len returns the number of live sessions.
func (t *Table[S]) Len() int {
	n := 0
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}
