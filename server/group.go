package server

import (
	"errors"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/group"
	"github.com/chatd/chatd/offline"
)

// groupFrame handles the group management frames.
func (s *Server) groupFrame(c *Conn, t codec.Type, body []byte) error {
	user := c.State.user.Load()
	f := codec.New(t)
	if err := f.Decode(body); err != nil {
		return s.malformed(c, err)
	}
	switch f := f.(type) {
	case *codec.GroupCreate:
		if s.storageFull() {
			s.errorTo(c, codec.CodeStorageFull, f.Req, nil, "")
			return nil
		}
		users := make([]uint64, 0, f.Users.Len())
		for i := 0; i < f.Users.Len(); i++ {
			if u := f.Users.At(i); !s.accounts.Exists(u) {
				s.errorTo(c, codec.CodeUnknownUser, f.Req, nil, "a listed member does not exist")
				return nil
			} else {
				users = append(users, u)
			}
		}
		g, err := s.groups.Create(user, f.Name, users)
		if err != nil {
			s.errorTo(c, s.groupCode(err), f.Req, nil, "")
			return nil
		}
		g.Mu.Lock()
		members := g.Members()
		var all []uint64
		for _, m := range members {
			all = append(all, m.User)
		}
		s.groupEvent(g, codec.GroupCreated, user, codec.Users(all...), all)
		name := append([]byte(nil), g.Name()...)
		g.Mu.Unlock()
		s.reply(c, (&codec.GroupInfo{Req: f.Req, Group: g.ID, Name: name, Members: members}).Append(nil))
	case *codec.GroupAdd:
		s.change(c, f.Req, f.Group, group.Change{Kind: codec.GroupAdded, Actor: user, Users: ids(f.Users)}, f.Users)
	case *codec.GroupRemove:
		s.change(c, f.Req, f.Group, group.Change{Kind: codec.GroupRemoved, Actor: user, Users: ids(f.Users)}, f.Users)
	case *codec.GroupLeave:
		s.change(c, f.Req, f.Group, group.Change{Kind: codec.GroupLeft, Actor: user}, nil)
	case *codec.GroupRename:
		s.change(c, f.Req, f.Group, group.Change{Kind: codec.GroupRenamed, Actor: user, Name: f.Name}, nil)
	case *codec.GroupAdmin:
		kind := codec.GroupPromoted
		if !f.Admin {
			kind = codec.GroupDemoted
		}
		s.change(c, f.Req, f.Group, group.Change{Kind: kind, Actor: user, Users: []uint64{f.User}}, codec.Users(f.User))
	case *codec.GroupGet:
		g, err := s.groups.Get(f.Group)
		if err != nil {
			s.errorTo(c, s.groupCode(err), f.Req, nil, "")
			return nil
		}
		g.Mu.RLock()
		_, member := g.Role(user)
		info := &codec.GroupInfo{Req: f.Req, Group: g.ID, Name: append([]byte(nil), g.Name()...), Members: g.Members()}
		g.Mu.RUnlock()
		if !member {
			// Non-members learn nothing, not even the members.
			s.errorTo(c, codec.CodeNotMember, f.Req, nil, "")
			return nil
		}
		s.reply(c, info.Append(nil))
	case *codec.GroupList:
		list, err := s.groups.List(user)
		if err != nil {
			s.errorTo(c, codec.CodeInternal, f.Req, nil, "")
			return nil
		}
		s.reply(c, (&codec.Groups{Req: f.Req, Groups: list}).Append(nil))
	}
	return nil
}

// change applies a membership change under the group's write lock and
// tells the members (and anyone removed) through their inboxes.
func (s *Server) change(c *Conn, req uint32, gid uint64, ch group.Change, users codec.UserList) {
	g, err := s.groups.Get(gid)
	if err == nil {
		for _, u := range ch.Users {
			if !s.accounts.Exists(u) {
				err = group.ErrInvalid
			}
		}
	}
	if err == nil {
		g.Mu.Lock()
		var notify []uint64
		if notify, err = s.groups.Apply(g, ch); err == nil {
			if users == nil {
				users = codec.Users(ch.Actor)
			}
			s.groupEvent(g, ch.Kind, ch.Actor, users, notify)
		}
		g.Mu.Unlock()
	}
	if err != nil {
		s.errorTo(c, s.groupCode(err), req, nil, "")
		return
	}
	s.reply(c, (&codec.OK{Req: req}).Append(nil))
}

// groupEvent queues a GROUP_EVENT for notify. g.Mu must be held, so that
// the event keeps its place among the group's messages.
func (s *Server) groupEvent(g *group.Group, kind codec.GroupEventKind, actor uint64, users codec.UserList, notify []uint64) {
	op := &offline.Op{Kind: offline.KindGroupEvent, Group: g.ID, EventKind: kind, Actor: actor,
		Name: append([]byte(nil), g.Name()...), Users: append(codec.UserList(nil), users...)}
	if err := s.inbox.SubmitGroup(op, notify); err != nil {
		s.log.Error("group event not queued")
	}
}

// sendGroup fans a SEND out to the group's members but the sender, under
// the group's read lock.
func (s *Server) sendGroup(c *Conn, f *codec.Send, user uint64) {
	g, err := s.groups.Get(f.To)
	if err != nil {
		s.errorTo(c, s.groupCode(err), 0, &f.ID, "")
		return
	}
	g.Mu.RLock()
	defer g.Mu.RUnlock()
	if _, ok := g.Role(user); !ok {
		s.errorTo(c, codec.CodeNotMember, 0, &f.ID, "")
		return
	}
	members := make([]uint64, 0, g.Len())
	g.Each(func(u uint64) {
		if u != user {
			members = append(members, u)
		}
	})
	op := &offline.Op{
		Kind: offline.KindMessage, Group: g.ID, From: user, ID: f.ID,
		Body: append([]byte(nil), f.Body...), Dup: f.Flags&codec.FlagDup != 0, Ctx: c,
	}
	if err := s.inbox.SubmitGroup(op, members); err != nil {
		s.errorTo(c, codec.CodeBusy, 0, &f.ID, "")
	}
}

// typingGroup relays IS_TYPING to the group's online members.
func (s *Server) typingGroup(user uint64, f *codec.Typing) {
	g, err := s.groups.Get(f.To)
	if err != nil {
		return
	}
	frame := (&codec.IsTyping{From: user, Group: f.To, State: f.State}).Append(nil)
	b := s.batch()
	g.Mu.RLock()
	if _, ok := g.Role(user); ok {
		g.Each(func(u uint64) {
			if to, ok := s.sessions.Lookup(u); ok && u != user && to.Write(frame) {
				b.Add(to)
			}
		})
	}
	g.Mu.RUnlock()
	s.flush(b)
}

func ids(l codec.UserList) []uint64 {
	out := make([]uint64, l.Len())
	for i := range out {
		out[i] = l.At(i)
	}
	return out
}

func (s *Server) groupCode(err error) codec.Code {
	switch {
	case errors.Is(err, group.ErrUnknown):
		return codec.CodeUnknownGroup
	case errors.Is(err, group.ErrNotMember):
		return codec.CodeNotMember
	case errors.Is(err, group.ErrNotAdmin):
		return codec.CodeNotAdmin
	case errors.Is(err, group.ErrFull):
		return codec.CodeGroupFull
	case errors.Is(err, group.ErrInvalid):
		return codec.CodeInvalidGroup
	case errors.Is(err, group.ErrAlreadyMember):
		return codec.CodeAlreadyMember
	case errors.Is(err, group.ErrLastAdmin):
		return codec.CodeLastAdmin
	}
	s.log.Error("group operation failed")
	return codec.CodeInternal
}
