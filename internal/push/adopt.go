package push

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// A cluster moves a home shard's records, subscriptions and due pushes
// included, to another node (server/move.go), which writes them to its
// database directly: these take them into memory there, and forget them
// at the node they left.

// Recount sets users' subscription counts from the database, after
// their records were written there from outside the store. Idempotent.
func (s *Store) Recount(users []uint64) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	for _, u := range users {
		p := userPrefix(PrefixSub, u)
		it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: userPrefix(PrefixSub, u+1)})
		if err != nil {
			return fmt.Errorf("push: recount subscriptions: %w", err)
		}
		n := 0
		for it.First(); it.Valid(); it.Next() {
			n++
		}
		if err := errors.Join(it.Error(), it.Close()); err != nil {
			return fmt.Errorf("push: recount subscriptions: %w", err)
		}
		s.mu.Lock()
		if n == 0 {
			delete(s.subscribed, u)
		} else {
			s.subscribed[u] = n
		}
		s.mu.Unlock()
	}
	return nil
}

// Forget drops from memory the users in (their records were deleted
// from outside the store): Due no longer opens windows for them.
func (s *Store) Forget(in func(user uint64) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for u := range s.subscribed {
		if in(u) {
			delete(s.subscribed, u)
		}
	}
}

// Adopt turns the due pushes of users, written to the database from
// outside the service, into open windows, as Start does for those a
// previous run left: for users with subscriptions and entries waiting.
// Call it after Recount.
func (s *Service) Adopt(users []uint64) error {
	if s == nil {
		return nil
	}
	now := time.Now()
	opened := 0
	for _, u := range users {
		v, closer, err := s.store.db.Get(userPrefix(PrefixDue, u))
		if errors.Is(err, pebble.ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("push: read due push: %w", err)
		}
		ok := len(v) == 5
		var d dueState
		if ok {
			d = dueState{count: binary.BigEndian.Uint32(v), urgency: Urgency(v[4])}
		}
		closer.Close()
		s.mu.Lock()
		open := s.windows[u] != nil // then its window writes the key again
		s.mu.Unlock()
		if open {
			continue
		}
		if !ok || !s.store.Has(u) || !s.cfg.Pending(u) {
			if err := s.store.clearDue(u); err != nil {
				return fmt.Errorf("push: clear due push: %w", err)
			}
			continue
		}
		s.mu.Lock()
		if s.windows[u] == nil {
			s.windows[u] = &window{count: d.count, urgency: d.urgency, opened: now, deadline: now.Add(s.cfg.Window)}
			s.fresh = append(s.fresh, u)
			opened++
		}
		s.mu.Unlock()
	}
	if opened > 0 {
		s.stats.opened.Add(uint64(opened))
		s.signal()
	}
	return nil
}
