package push

import (
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
		d, ok := decodeDue(v)
		closer.Close()
		o, err := s.openDue(u, d, ok, now)
		if err != nil {
			return err
		}
		if o {
			opened++
		}
	}
	if opened > 0 {
		s.stats.opened.Add(uint64(opened))
		s.signal()
	}
	return nil
}

// openDue opens a window for the push found due for u in the database
// (left by the last run, or by the node u's shard moved from) with the
// count and urgency it recorded, or clears the record when it is
// malformed (!valid), u has no subscription or nothing waits for u. A
// window already open writes the record again itself. s.mu is not held
// across Pending, which reads the inbox (whose lanes call Due).
func (s *Service) openDue(u uint64, d dueState, valid bool, now time.Time) (bool, error) {
	s.mu.Lock()
	open := s.windows[u] != nil
	s.mu.Unlock()
	if open {
		return false, nil
	}
	if !valid || !s.store.Has(u) || !s.cfg.Pending(u) {
		if err := s.store.clearDue(u); err != nil {
			return false, fmt.Errorf("push: clear due push: %w", err)
		}
		return false, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.windows[u] != nil {
		return false, nil
	}
	s.windows[u] = &window{count: d.count, urgency: d.urgency, opened: now, deadline: now.Add(s.cfg.Window)}
	s.fresh = append(s.fresh, u)
	return true, nil
}
