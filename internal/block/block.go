// Package block keeps each user's own lists of other users, which decide
// what those users may do to them: the users they blocked, their
// contacts, and who may add them to groups. The lists are small and read
// on every SEND, TYPING and presence update, so the whole of them is held
// in memory (loaded at Open) and every change is written through to the
// store, with Sync, before it is acknowledged.
//
// # Keys
//
//	'B' | owner (8) | list (1) | user (8)   -> empty      (list 0 blocked, 1 contacts)
//	'B' | owner (8) | 0xFF                  -> from (1)   (GROUP_ADDS; absent means everyone)
package block

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/store"
	"github.com/cockroachdb/pebble/v2"
)

// ErrListFull refuses an addition to a list already at its limit.
var ErrListFull = errors.New("block: list full")

// DefaultMaxList bounds each of a user's lists: LIST carries a whole list
// in one frame, whose user count is at most codec.MaxUsers.
const DefaultMaxList = codec.MaxUsers

const settingsKey = 0xFF

// Store holds every user's lists.
type Store struct {
	db  *pebble.DB
	max int

	// wmu makes each change whole: the limit check, the durable write and
	// the update of the in-memory lists. Changes are rare (a person
	// blocking someone); reads never take it.
	wmu sync.Mutex

	// Every user's lists, by owner, in shards so that the readers on many
	// event loops (a SEND checks two lists) do not all share one lock's
	// cache line.
	shards [shardCount]shard
}

const shardCount = 64

type shard struct {
	mu    sync.RWMutex
	users map[uint64]*lists // guarded by mu
	_     [32]byte          // 24 + 8 + 32: a cache line each
}

func (s *Store) shard(owner uint64) *shard {
	return &s.shards[(owner*0x9E3779B97F4A7C15)>>58]
}

type lists struct {
	sets [2]map[uint64]struct{} // by codec.ListKind
	from codec.AddsFrom
}

// Open loads every user's lists from db. max bounds each list; 0 means
// DefaultMaxList.
func Open(db *pebble.DB, max int) (*Store, error) {
	if max <= 0 || max > codec.MaxUsers {
		max = DefaultMaxList
	}
	s := &Store{db: db, max: max}
	for i := range s.shards {
		s.shards[i].users = map[uint64]*lists{}
	}
	lo := []byte{store.PrefixBlock}
	if err := s.load(lo, store.PrefixEnd(lo), s.of); err != nil {
		return nil, fmt.Errorf("block: load lists: %w", err)
	}
	return s, nil
}

// load reads the list records in [lo, hi) into the lists into gives
// for each record's owner.
func (s *Store) load(lo, hi []byte, into func(owner uint64) *lists) error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		switch {
		case len(k) == 1+8+1+8 && k[9] <= byte(codec.ListContacts):
			into(binary.BigEndian.Uint64(k[1:])).add(codec.ListKind(k[9]), binary.BigEndian.Uint64(k[10:]))
		case len(k) == 1+8+1 && k[9] == settingsKey && len(it.Value()) == 1:
			into(binary.BigEndian.Uint64(k[1:])).from = codec.AddsFrom(it.Value()[0])
		}
	}
	return errors.Join(it.Error(), it.Close())
}

// of returns owner's lists, making them; the owner's shard's mu (or
// exclusive use) must be held.
func (s *Store) of(owner uint64) *lists {
	sh := s.shard(owner)
	l := sh.users[owner]
	if l == nil {
		l = &lists{}
		sh.users[owner] = l
	}
	return l
}

// read returns owner's lists (nil if none) under its shard's read lock,
// which the caller releases with the returned shard.
func (s *Store) read(owner uint64) (*lists, *shard) {
	sh := s.shard(owner)
	sh.mu.RLock()
	return sh.users[owner], sh
}

func (l *lists) add(kind codec.ListKind, user uint64) {
	if l.sets[kind] == nil {
		l.sets[kind] = map[uint64]struct{}{}
	}
	l.sets[kind][user] = struct{}{}
}

func (l *lists) has(kind codec.ListKind, user uint64) bool {
	_, ok := l.sets[kind][user]
	return ok
}

// Blocks reports whether owner blocked user. It is one map lookup under a
// read lock: the event loop calls it for every SEND.
func (s *Store) Blocks(owner, user uint64) bool {
	l, sh := s.read(owner)
	defer sh.mu.RUnlock()
	return l != nil && l.has(codec.ListBlocked, user)
}

// AcceptsAdd reports whether actor may add owner to a group: owner has
// not blocked actor, and either takes adds from everyone or has actor
// among its contacts.
func (s *Store) AcceptsAdd(owner, actor uint64) bool {
	l, sh := s.read(owner)
	defer sh.mu.RUnlock()
	if l == nil {
		return true
	}
	if l.has(codec.ListBlocked, actor) {
		return false
	}
	return l.from == codec.AddsFromEveryone || l.has(codec.ListContacts, actor)
}

// Set adds user to (on) or removes user from owner's list kind, durably.
// Adding a user already listed, or removing one who is not, succeeds and
// writes nothing.
func (s *Store) Set(owner uint64, kind codec.ListKind, user uint64, on bool) error {
	if kind > codec.ListContacts {
		return fmt.Errorf("block: unknown list %d", kind)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	l, sh := s.read(owner)
	listed, n := false, 0
	if l != nil {
		listed, n = l.has(kind, user), len(l.sets[kind])
	}
	sh.mu.RUnlock()
	if listed == on {
		return nil
	}
	if on && n >= s.max {
		return fmt.Errorf("%w: at most %d users in one list", ErrListFull, s.max)
	}
	k := listKey(owner, kind, user)
	var err error
	if on {
		err = s.db.Set(k, nil, pebble.Sync)
	} else {
		err = s.db.Delete(k, pebble.Sync)
	}
	if err != nil {
		return fmt.Errorf("block: store %v list of %d: %w", kind, owner, err)
	}
	sh.mu.Lock()
	if on {
		s.of(owner).add(kind, user)
	} else {
		delete(sh.users[owner].sets[kind], user)
	}
	sh.mu.Unlock()
	return nil
}

// SetAddsFrom stores who may add owner to groups, durably.
func (s *Store) SetAddsFrom(owner uint64, from codec.AddsFrom) error {
	if from > codec.AddsFromContacts {
		return fmt.Errorf("block: unknown group-add setting %d", from)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	k := append(userPrefix(owner), settingsKey)
	var err error
	if from == codec.AddsFromEveryone {
		err = s.db.Delete(k, pebble.Sync) // the default needs no key
	} else {
		err = s.db.Set(k, []byte{byte(from)}, pebble.Sync)
	}
	if err != nil {
		return fmt.Errorf("block: store group-add setting of %d: %w", owner, err)
	}
	sh := s.shard(owner)
	sh.mu.Lock()
	s.of(owner).from = from
	sh.mu.Unlock()
	return nil
}

// AddsFrom returns owner's group-add setting.
func (s *Store) AddsFrom(owner uint64) codec.AddsFrom {
	l, sh := s.read(owner)
	defer sh.mu.RUnlock()
	if l != nil {
		return l.from
	}
	return codec.AddsFromEveryone
}

// List returns owner's list kind in increasing id order.
func (s *Store) List(owner uint64, kind codec.ListKind) []uint64 {
	l, sh := s.read(owner)
	defer sh.mu.RUnlock()
	if l == nil || kind > codec.ListContacts {
		return nil
	}
	out := make([]uint64, 0, len(l.sets[kind]))
	for u := range l.sets[kind] {
		out = append(out, u)
	}
	slices.Sort(out)
	return out
}

// Delete removes all of owner's lists and settings, durably (account
// deletion). Deleting lists that are gone already succeeds.
func (s *Store) Delete(owner uint64) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	p := userPrefix(owner)
	if err := s.db.DeleteRange(p, store.PrefixEnd(p), pebble.Sync); err != nil {
		return fmt.Errorf("block: delete lists of %d: %w", owner, err)
	}
	sh := s.shard(owner)
	sh.mu.Lock()
	delete(sh.users, owner)
	sh.mu.Unlock()
	return nil
}

func userPrefix(owner uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{store.PrefixBlock}, owner)
}

func listKey(owner uint64, kind codec.ListKind, user uint64) []byte {
	return binary.BigEndian.AppendUint64(append(userPrefix(owner), byte(kind)), user)
}

// Adopt loads from the store the lists of owners whose records a shard
// move just wrote there (a cluster's new home), replacing what memory
// held of them.
func (s *Store) Adopt(owners []uint64) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	for _, owner := range owners {
		l := &lists{}
		p := userPrefix(owner)
		if err := s.load(p, store.PrefixEnd(p), func(uint64) *lists { return l }); err != nil {
			return fmt.Errorf("block: adopt lists of %d: %w", owner, err)
		}
		sh := s.shard(owner)
		sh.mu.Lock()
		sh.users[owner] = l
		sh.mu.Unlock()
	}
	return nil
}

// Forget drops from memory the lists of the owners in (a shard moved
// away: its records were deleted here, or are about to be).
func (s *Store) Forget(in func(owner uint64) bool) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for owner := range sh.users {
			if in(owner) {
				delete(sh.users, owner)
			}
		}
		sh.mu.Unlock()
	}
}

// Owner returns the owner of a list record's key (a shard move tells
// whose lists it imported).
func Owner(key []byte) (uint64, bool) {
	if len(key) < 1+8 || key[0] != store.PrefixBlock {
		return 0, false
	}
	return binary.BigEndian.Uint64(key[1:]), true
}
