package server

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/group"
)

// userDeleter removes one kind of data a user owns, for account
// deletion (delete.go). delete must be idempotent: a deletion that a
// crash interrupted runs every step again at the next start, and a
// failed step is retried.
type userDeleter struct {
	name   string
	delete func(user uint64) error
}

// userDeleters lists, in order, what account deletion removes before
// the account record itself. THIS IS THE PLACE to plug in the deletion of
// any other per-user data (prekeys, push subscriptions, ...): add an
// entry here. Groups go first, so that the events the leaves queue for
// the user are purged with the rest of the inbox.
func (s *Server) userDeleters() []userDeleter {
	return []userDeleter{
		{"groups", s.leaveAllGroups},
		{"inbox", s.purgeInbox},
		{"presence", s.presence.Delete},
		{"lists", s.blocks.Delete},
		{"prekeys", s.prekeys.Delete},
		{"push subscriptions", s.deletePushSubscriptions}, // at the user's home, on a cluster
	}
}

// leaveGroups takes user out of every group homed here, as GROUP_LEAVE
// would: the remaining members get GROUP_EVENT left. A last admin first
// makes the other member with the lowest id admin, with its event.
func (s *Server) leaveGroups(user uint64) error {
	list, err := s.groups.List(user)
	if err != nil {
		return err
	}
	for _, g := range list {
		if s.cl != nil && !s.local(g.Group) {
			continue // left behind by a move: its new home takes the user out (leaveAllGroups)
		}
		done := make(chan error, 1)
		if !s.commits.submit(g.Group, func() { done <- s.leaveGroup(user, g.Group) }) {
			return fmt.Errorf("group %d: commit lane full", g.Group)
		}
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("group %d: %w", g.Group, err)
			}
		case <-s.closing:
			return errClosing
		}
	}
	return nil
}

// leaveGroup runs on the group's commit lane.
func (s *Server) leaveGroup(user, gid uint64) error {
	g, err := s.groups.Get(gid)
	if errors.Is(err, group.ErrUnknown) {
		return nil
	}
	if err != nil {
		return err
	}
	apply := func(ch group.Change) error {
		users := codec.Users(ch.Users...)
		if len(ch.Users) == 0 {
			users = codec.Users(ch.Actor)
		}
		return s.groups.Apply(g, ch, func(notify []uint64) {
			s.groupEvent(g, ch.Kind, ch.Actor, users, notify)
		})
	}
	err = apply(group.Change{Kind: codec.GroupLeft, Actor: user})
	if errors.Is(err, group.ErrLastAdmin) {
		g.Mu.RLock()
		var others []uint64
		g.Each(func(u uint64) {
			if u != user {
				others = append(others, u)
			}
		})
		g.Mu.RUnlock()
		if len(others) > 0 {
			if err := apply(group.Change{Kind: codec.GroupPromoted, Actor: user, Users: []uint64{slices.Min(others)}}); err != nil {
				return err
			}
		}
		err = apply(group.Change{Kind: codec.GroupLeft, Actor: user})
	}
	if errors.Is(err, group.ErrNotMember) {
		return nil // left already
	}
	return err
}

// purgeInbox expires everything in user's inbox (the senders get expired
// receipts) and waits until it is empty: entries queued meanwhile (the
// group leaves' events) are purged in turn.
func (s *Server) purgeInbox(user uint64) error {
	deadline := time.Now().Add(time.Minute)
	for {
		if err := s.inbox.Purge(user); err != nil {
			return err
		}
		// The deletes follow the receipts' syncs and ride a lazy batch.
		for range 40 {
			n, err := s.inbox.Count(user)
			if err != nil {
				return err
			}
			if n == 0 {
				return nil
			}
			select {
			case <-s.closing:
				return errClosing
			case <-time.After(50 * time.Millisecond):
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("inbox of %d not empty after a minute", user)
		}
	}
}
