// Package group keeps chat groups: their names, members and admins, in the
// embedded store, with an in-memory copy of each group in use. Every
// change is written with Sync before it is visible, so group state
// survives restarts.
//
// Keys (see package store):
//
//	'g' | group (8) | 0x00           -> name str8 | created (8) | creator (8)
//	'g' | group (8) | 0x01 | user (8) -> role (1)
//	'G' | user (8) | group (8)       -> empty      (a user's groups)
//	'm' "group"                      -> next group id (written by older versions; read only)
//
// Group ids are never reused: Open starts after the highest id that has
// keys, so a group whose create committed late, or a counter that lagged,
// cannot hand a new group an old group's members.
//
// Locks, in order (take a later one only while holding an earlier one, or
// none):
//
//	Group.wmu  serialises the changes of one group; held across the fsync.
//	           Only Create and Apply take it, never the event loop.
//	Group.Mu   orders the group's messages and changes: senders hold it for
//	           reading while they queue a message for the members, Apply and
//	           Create hold it for writing only to install a durable change
//	           and queue its GROUP_EVENT. Never held across an fsync.
//	Store.mu   guards the map of loaded groups and the next id; held for a
//	           map lookup or a store read, never while taking Group.Mu.
//
// So all members see the group's messages in one order, and a member
// removed by a change gets nothing sent after it.
package group

import (
	"errors"
	"sort"
	"sync"

	"github.com/chatd/chatd/codec"
)

// Errors, each mapped to an ERROR code by the server. Errors about a named
// user wrap these with the user's id.
var (
	ErrUnknown       = errors.New("group: unknown group")
	ErrNotMember     = errors.New("group: not a member")
	ErrNotAdmin      = errors.New("group: not an admin")
	ErrFull          = errors.New("group: member limit reached")
	ErrInvalid       = errors.New("group: invalid name or member list")
	ErrAlreadyMember = errors.New("group: already a member")
	ErrLastAdmin     = errors.New("group: the last admin cannot leave or step down")
)

// Group is one group in memory.
type Group struct {
	ID uint64

	wmu sync.Mutex // held by the one change being made; see the package doc

	// Guarded by Mu.
	Mu      sync.RWMutex
	name    []byte
	members map[uint64]codec.Role
}

// Name returns the group's name. Mu must be held.
func (g *Group) Name() []byte { return g.name }

// Role returns user's role and whether user is a member. Mu must be held.
func (g *Group) Role(user uint64) (codec.Role, bool) {
	r, ok := g.members[user]
	return r, ok
}

// Members returns the members in id order. Mu must be held.
func (g *Group) Members() []codec.Member {
	out := make([]codec.Member, 0, len(g.members))
	for u, r := range g.members {
		out = append(out, codec.Member{User: u, Role: r})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].User < out[j].User })
	return out
}

// Each calls fn for every member. Mu must be held.
func (g *Group) Each(fn func(user uint64)) {
	for u := range g.members {
		fn(u)
	}
}

// Len returns the member count. Mu must be held.
func (g *Group) Len() int { return len(g.members) }
