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
//	'm' "group"                      -> next group id
//
// A Group's lock orders everything that touches it: sends fan out under
// the read lock, membership changes take the write lock. So all members
// see the group's messages in one order, and a member removed by a change
// gets nothing sent after it.
package group

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/store"
	"github.com/cockroachdb/pebble/v2"
)

// Errors, each mapped to an ERROR code by the server.
var (
	ErrUnknown       = errors.New("group: unknown group")
	ErrNotMember     = errors.New("group: not a member")
	ErrNotAdmin      = errors.New("group: not an admin")
	ErrFull          = errors.New("group: member limit reached")
	ErrInvalid       = errors.New("group: invalid name or member list")
	ErrAlreadyMember = errors.New("group: already a member")
	ErrLastAdmin     = errors.New("group: the last admin cannot leave or step down")
)

// Group is one group in memory. Fields are guarded by Mu.
type Group struct {
	ID uint64
	Mu sync.RWMutex

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

func (g *Group) admins() int {
	n := 0
	for _, r := range g.members {
		if r == codec.RoleAdmin {
			n++
		}
	}
	return n
}

// Store reads and writes groups.
type Store struct {
	db         *pebble.DB
	maxMembers int

	mu     sync.Mutex
	groups map[uint64]*Group // loaded groups
	next   uint64
}

var metaNext = []byte{store.PrefixMeta, 'g', 'r', 'o', 'u', 'p'}

// Open returns the group store; maxMembers is the size limit (default 256).
func Open(db *pebble.DB, maxMembers int) (*Store, error) {
	if maxMembers <= 0 {
		maxMembers = codec.DefaultMaxGroup
	}
	s := &Store{db: db, maxMembers: maxMembers, groups: map[uint64]*Group{}, next: 1}
	v, closer, err := db.Get(metaNext)
	switch {
	case err == nil:
		s.next = binary.BigEndian.Uint64(v)
		closer.Close()
	case !errors.Is(err, pebble.ErrNotFound):
		return nil, fmt.Errorf("group: read next id: %w", err)
	}
	return s, nil
}

// Get returns a group, loading it from the store on first use.
func (s *Store) Get(id uint64) (*Group, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g, ok := s.groups[id]; ok {
		return g, nil
	}
	v, closer, err := s.db.Get(infoKey(id))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrUnknown
	}
	if err != nil {
		return nil, fmt.Errorf("group: read %d: %w", id, err)
	}
	g := &Group{ID: id, name: append([]byte(nil), v[1:1+int(v[0])]...), members: map[uint64]codec.Role{}}
	closer.Close()
	prefix := memberPrefix(id)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: store.PrefixEnd(prefix)})
	if err != nil {
		return nil, fmt.Errorf("group: read members of %d: %w", id, err)
	}
	for it.First(); it.Valid(); it.Next() {
		g.members[binary.BigEndian.Uint64(it.Key()[10:])] = codec.Role(it.Value()[0])
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("group: read members of %d: %w", id, err)
	}
	s.groups[id] = g
	return g, nil
}

// Create makes a group with creator as admin and users as members.
func (s *Store) Create(creator uint64, name []byte, users []uint64) (*Group, error) {
	if codec.ValidateGroupName(name) != nil {
		return nil, ErrInvalid
	}
	members := map[uint64]codec.Role{creator: codec.RoleAdmin}
	for _, u := range users {
		if u == 0 {
			return nil, ErrInvalid
		}
		if _, ok := members[u]; !ok {
			members[u] = codec.RoleMember
		}
	}
	if len(members) > s.maxMembers {
		return nil, ErrFull
	}
	s.mu.Lock()
	id := s.next
	s.next++
	s.mu.Unlock()
	g := &Group{ID: id, name: append([]byte(nil), name...), members: members}
	b := s.db.NewBatch()
	defer b.Close()
	b.Set(metaNext, binary.BigEndian.AppendUint64(nil, id+1), nil)
	info := append([]byte{byte(len(name))}, name...)
	info = binary.BigEndian.AppendUint64(info, uint64(time.Now().UnixMilli()))
	info = binary.BigEndian.AppendUint64(info, creator)
	b.Set(infoKey(id), info, nil)
	for u, r := range members {
		setMember(b, id, u, r)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return nil, fmt.Errorf("group: create: %w", err)
	}
	s.mu.Lock()
	s.groups[id] = g
	s.mu.Unlock()
	return g, nil
}

// Change is a membership change, applied by Apply under the group's lock.
type Change struct {
	Kind  codec.GroupEventKind
	Actor uint64
	Users []uint64
	Name  []byte
}

// Apply checks and makes a change durable, then updates the group. The
// caller holds g.Mu for writing, and learns from the returned list whom to
// tell: the members after the change, plus the users it removed.
func (s *Store) Apply(g *Group, ch Change) (notify []uint64, err error) {
	role, ok := g.members[ch.Actor]
	if !ok {
		return nil, ErrNotMember
	}
	b := s.db.NewBatch()
	defer b.Close()
	next := make(map[uint64]codec.Role, len(g.members)+len(ch.Users))
	for u, r := range g.members {
		next[u] = r
	}
	var gone []uint64
	switch ch.Kind {
	case codec.GroupAdded:
		if role != codec.RoleAdmin {
			return nil, ErrNotAdmin
		}
		for _, u := range ch.Users {
			if _, ok := next[u]; ok {
				return nil, ErrAlreadyMember
			}
			if u == 0 {
				return nil, ErrInvalid
			}
			next[u] = codec.RoleMember
			setMember(b, g.ID, u, codec.RoleMember)
		}
		if len(next) > s.maxMembers {
			return nil, ErrFull
		}
	case codec.GroupRemoved:
		if role != codec.RoleAdmin {
			return nil, ErrNotAdmin
		}
		for _, u := range ch.Users {
			if _, ok := next[u]; !ok {
				return nil, ErrNotMember
			}
			delete(next, u)
			gone = append(gone, u)
			deleteMember(b, g.ID, u)
		}
	case codec.GroupLeft:
		if role == codec.RoleAdmin && g.admins() == 1 && len(g.members) > 1 {
			return nil, ErrLastAdmin
		}
		delete(next, ch.Actor)
		gone = append(gone, ch.Actor)
		deleteMember(b, g.ID, ch.Actor)
	case codec.GroupRenamed:
		if role != codec.RoleAdmin {
			return nil, ErrNotAdmin
		}
		if codec.ValidateGroupName(ch.Name) != nil {
			return nil, ErrInvalid
		}
		v, closer, err := s.db.Get(infoKey(g.ID))
		if err != nil {
			return nil, fmt.Errorf("group: rename: %w", err)
		}
		info := append([]byte{byte(len(ch.Name))}, ch.Name...)
		info = append(info, v[1+int(v[0]):]...)
		closer.Close()
		b.Set(infoKey(g.ID), info, nil)
	case codec.GroupPromoted, codec.GroupDemoted:
		if role != codec.RoleAdmin {
			return nil, ErrNotAdmin
		}
		want := codec.RoleAdmin
		if ch.Kind == codec.GroupDemoted {
			want = codec.RoleMember
		}
		for _, u := range ch.Users {
			if _, ok := next[u]; !ok {
				return nil, ErrNotMember
			}
			next[u] = want
			setMember(b, g.ID, u, want)
		}
		admins := 0
		for _, r := range next {
			if r == codec.RoleAdmin {
				admins++
			}
		}
		if admins == 0 {
			return nil, ErrLastAdmin
		}
	default:
		return nil, ErrInvalid
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return nil, fmt.Errorf("group: %v: %w", ch.Kind, err)
	}
	g.members = next
	if ch.Kind == codec.GroupRenamed {
		g.name = append([]byte(nil), ch.Name...)
	}
	for u := range next {
		notify = append(notify, u)
	}
	return append(notify, gone...), nil
}

// List returns the groups user belongs to.
func (s *Store) List(user uint64) ([]codec.GroupSummary, error) {
	prefix := binary.BigEndian.AppendUint64([]byte{store.PrefixUserGroups}, user)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: store.PrefixEnd(prefix)})
	if err != nil {
		return nil, fmt.Errorf("group: list: %w", err)
	}
	var ids []uint64
	for it.First(); it.Valid(); it.Next() {
		ids = append(ids, binary.BigEndian.Uint64(it.Key()[9:]))
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("group: list: %w", err)
	}
	out := make([]codec.GroupSummary, 0, len(ids))
	for _, id := range ids {
		g, err := s.Get(id)
		if err != nil {
			continue
		}
		g.Mu.RLock()
		out = append(out, codec.GroupSummary{Group: id, Name: append([]byte(nil), g.name...)})
		g.Mu.RUnlock()
	}
	return out, nil
}

func infoKey(id uint64) []byte {
	return append(binary.BigEndian.AppendUint64([]byte{store.PrefixGroup}, id), 0)
}

func memberPrefix(id uint64) []byte {
	return append(binary.BigEndian.AppendUint64([]byte{store.PrefixGroup}, id), 1)
}

func setMember(b *pebble.Batch, id, user uint64, r codec.Role) {
	b.Set(binary.BigEndian.AppendUint64(memberPrefix(id), user), []byte{byte(r)}, nil)
	k := binary.BigEndian.AppendUint64([]byte{store.PrefixUserGroups}, user)
	b.Set(binary.BigEndian.AppendUint64(k, id), nil, nil)
}

func deleteMember(b *pebble.Batch, id, user uint64) {
	b.Delete(binary.BigEndian.AppendUint64(memberPrefix(id), user), nil)
	k := binary.BigEndian.AppendUint64([]byte{store.PrefixUserGroups}, user)
	b.Delete(binary.BigEndian.AppendUint64(k, id), nil)
}
