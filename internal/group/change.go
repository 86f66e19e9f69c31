package group

import (
	"fmt"

	"github.com/chatd/chatd/codec"
	"github.com/cockroachdb/pebble/v2"
)

// Change is a membership change, applied by Apply.
type Change struct {
	Kind  codec.GroupEventKind
	Actor uint64
	Users []uint64
	Name  []byte
}

// Apply checks a change, makes it durable and then visible:
//
//	wmu.Lock                      one change at a time per group
//	  Mu.RLock; plan; Mu.RUnlock  check against the current members
//	  commit with Sync            no lock the senders take is held
//	  Mu.Lock; install; publish(notify); Mu.Unlock
//	wmu.Unlock
//
// publish learns whom to tell (the members after the change, plus the
// users it removed) and runs under the write lock, so the change's event
// keeps its place among the group's messages. Messages sent while the
// change commits still go to the members before it.
func (s *Store) Apply(g *Group, ch Change, publish func(notify []uint64)) error {
	g.wmu.Lock()
	defer g.wmu.Unlock()
	g.Mu.RLock()
	b := s.db.NewBatch()
	defer b.Close()
	next, gone, err := s.plan(g, ch, b)
	g.Mu.RUnlock()
	if err != nil {
		return err
	}
	s.beforeCommit()
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("group: %v: %w", ch.Kind, err)
	}
	g.Mu.Lock()
	defer g.Mu.Unlock()
	g.members = next
	if ch.Kind == codec.GroupRenamed {
		g.name = append([]byte(nil), ch.Name...)
	}
	if publish != nil {
		notify := make([]uint64, 0, len(next)+len(gone))
		for u := range next {
			notify = append(notify, u)
		}
		publish(append(notify, gone...))
	}
	return nil
}

// plan checks ch against g and writes its keys into b. It returns the
// members after the change and the users it removed. g.Mu is held for
// reading.
func (s *Store) plan(g *Group, ch Change, b *pebble.Batch) (next map[uint64]codec.Role, gone []uint64, err error) {
	role, ok := g.members[ch.Actor]
	if !ok {
		return nil, nil, fmt.Errorf("%w: you are not a member of group %d", ErrNotMember, g.ID)
	}
	if ch.Kind != codec.GroupLeft && role != codec.RoleAdmin {
		return nil, nil, fmt.Errorf("%w: only an admin of group %d may do that", ErrNotAdmin, g.ID)
	}
	next = make(map[uint64]codec.Role, len(g.members)+len(ch.Users))
	for u, r := range g.members {
		next[u] = r
	}
	switch ch.Kind {
	case codec.GroupAdded:
		for _, u := range ch.Users {
			if u == 0 {
				return nil, nil, fmt.Errorf("%w: user 0 does not exist", ErrInvalid)
			}
			if _, ok := next[u]; ok {
				return nil, nil, fmt.Errorf("%w: user %d is already in group %d", ErrAlreadyMember, u, g.ID)
			}
			next[u] = codec.RoleMember
			setMember(b, g.ID, u, codec.RoleMember)
		}
		if len(next) > s.maxMembers {
			return nil, nil, fmt.Errorf("%w: %d members; the limit is %d", ErrFull, len(next), s.maxMembers)
		}
	case codec.GroupRemoved:
		for _, u := range ch.Users {
			if _, ok := next[u]; !ok {
				return nil, nil, fmt.Errorf("%w: user %d is not in group %d", ErrNotMember, u, g.ID)
			}
			delete(next, u)
			gone = append(gone, u)
			deleteMember(b, g.ID, u)
		}
		if admins(next) == 0 && len(next) > 0 {
			return nil, nil, fmt.Errorf("%w: make another member admin first", ErrLastAdmin)
		}
	case codec.GroupLeft:
		if role == codec.RoleAdmin && admins(g.members) == 1 && len(g.members) > 1 {
			return nil, nil, fmt.Errorf("%w: make another member admin first", ErrLastAdmin)
		}
		delete(next, ch.Actor)
		gone = append(gone, ch.Actor)
		deleteMember(b, g.ID, ch.Actor)
	case codec.GroupRenamed:
		if codec.ValidateGroupName(ch.Name) != nil {
			return nil, nil, fmt.Errorf("%w: the name must be 1 to 64 bytes of UTF-8", ErrInvalid)
		}
		v, closer, err := s.db.Get(infoKey(g.ID))
		if err != nil {
			return nil, nil, fmt.Errorf("group: rename: %w", err)
		}
		info := append([]byte{byte(len(ch.Name))}, ch.Name...)
		info = append(info, v[1+int(v[0]):]...)
		closer.Close()
		b.Set(infoKey(g.ID), info, nil)
	case codec.GroupPromoted, codec.GroupDemoted:
		want := codec.RoleAdmin
		if ch.Kind == codec.GroupDemoted {
			want = codec.RoleMember
		}
		for _, u := range ch.Users {
			if _, ok := next[u]; !ok {
				return nil, nil, fmt.Errorf("%w: user %d is not in group %d", ErrNotMember, u, g.ID)
			}
			next[u] = want
			setMember(b, g.ID, u, want)
		}
		if admins(next) == 0 {
			return nil, nil, fmt.Errorf("%w: make another member admin first", ErrLastAdmin)
		}
	default:
		return nil, nil, fmt.Errorf("%w: unknown change %v", ErrInvalid, ch.Kind)
	}
	return next, gone, nil
}

func admins(m map[uint64]codec.Role) int {
	n := 0
	for _, r := range m {
		if r == codec.RoleAdmin {
			n++
		}
	}
	return n
}
