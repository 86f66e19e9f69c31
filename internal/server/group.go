package server

import (
	"errors"
	"fmt"
	"strings"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/group"
	"github.com/chatd/chatd/internal/offline"
	"go.uber.org/zap"
)

// groupFrame handles the group management frames. It decodes and copies
// the request on the event loop and runs it on a commit lane (see
// commits): a create or change is answered once it is durable, and no
// fsync runs on the event loop or under a lock the event loop takes.
func (s *Server) groupFrame(c *Conn, t codec.Type, body []byte) error {
	user := c.State.user.Load()
	f := codec.New(t)
	if err := f.Decode(body); err != nil {
		return s.malformed(c, err)
	}
	var (
		req uint32
		key uint64 // the group's id, or the user's for requests not about one group
		job func()
	)
	switch f := f.(type) {
	case *codec.GroupCreate:
		if s.storageFull() {
			s.errorTo(c, codec.CodeStorageFull, f.Req, nil, "the server's disk is nearly full; retry later")
			return nil
		}
		req, key = f.Req, user
		name, users := append([]byte(nil), f.Name...), ids(f.Users)
		job = func() { s.groupCreate(c, req, user, name, users) }
	case *codec.GroupAdd:
		req, key = f.Req, f.Group
		ch := group.Change{Kind: codec.GroupAdded, Actor: user, Users: ids(f.Users)}
		job = func() { s.groupChange(c, req, key, ch) }
	case *codec.GroupRemove:
		req, key = f.Req, f.Group
		ch := group.Change{Kind: codec.GroupRemoved, Actor: user, Users: ids(f.Users)}
		job = func() { s.groupChange(c, req, key, ch) }
	case *codec.GroupLeave:
		req, key = f.Req, f.Group
		ch := group.Change{Kind: codec.GroupLeft, Actor: user}
		job = func() { s.groupChange(c, req, key, ch) }
	case *codec.GroupRename:
		req, key = f.Req, f.Group
		ch := group.Change{Kind: codec.GroupRenamed, Actor: user, Name: append([]byte(nil), f.Name...)}
		job = func() { s.groupChange(c, req, key, ch) }
	case *codec.GroupAdmin:
		req, key = f.Req, f.Group
		ch := group.Change{Kind: codec.GroupPromoted, Actor: user, Users: []uint64{f.User}}
		if !f.Admin {
			ch.Kind = codec.GroupDemoted
		}
		job = func() { s.groupChange(c, req, key, ch) }
	case *codec.GroupGet:
		req, key = f.Req, f.Group
		job = func() { s.groupGet(c, req, user, key) }
	case *codec.GroupList:
		req, key = f.Req, user
		job = func() { s.groupList(c, req, user) }
	}
	if !s.commits.submit(key, func() { job(); c.Flush() }) {
		s.counters.busy.Add(1)
		s.errorTo(c, codec.CodeBusy, req, nil, "too many group requests queued; retry")
	}
	return nil
}

// groupCreate runs on a commit lane. Every member, the creator included,
// gets a GROUP_EVENT created; the creator's answer is GROUP_INFO.
func (s *Server) groupCreate(c *Conn, req uint32, user uint64, name []byte, users []uint64) {
	if err := s.usersExist(users); err != nil {
		s.groupError(c, req, err)
		return
	}
	var info codec.GroupInfo
	_, err := s.groups.Create(user, name, users, func(g *group.Group) {
		info = codec.GroupInfo{Req: req, Group: g.ID, Name: append([]byte(nil), g.Name()...), Members: g.Members()}
		all := make([]uint64, len(info.Members))
		for i, m := range info.Members {
			all[i] = m.User
		}
		s.groupEvent(g, codec.GroupCreated, user, codec.Users(all...), all)
	})
	if err != nil {
		s.groupError(c, req, err)
		return
	}
	s.reply(c, info.Append(nil))
}

// groupChange runs on the group's commit lane: it makes the change durable,
// tells the members (and anyone removed) through their inboxes, then
// answers OK.
func (s *Server) groupChange(c *Conn, req uint32, gid uint64, ch group.Change) {
	g, err := s.groups.Get(gid)
	if err == nil {
		err = s.usersExist(ch.Users)
	}
	if err == nil {
		users := codec.Users(ch.Users...)
		if len(ch.Users) == 0 {
			users = codec.Users(ch.Actor)
		}
		err = s.groups.Apply(g, ch, func(notify []uint64) {
			s.groupEvent(g, ch.Kind, ch.Actor, users, notify)
		})
	}
	if err != nil {
		s.groupError(c, req, err)
		return
	}
	s.reply(c, (&codec.OK{Req: req}).Append(nil))
}

func (s *Server) groupGet(c *Conn, req uint32, user, gid uint64) {
	g, err := s.groups.Get(gid)
	if err != nil {
		s.groupError(c, req, err)
		return
	}
	g.Mu.RLock()
	_, member := g.Role(user)
	info := &codec.GroupInfo{Req: req, Group: g.ID, Name: append([]byte(nil), g.Name()...), Members: g.Members()}
	g.Mu.RUnlock()
	if !member {
		// Non-members learn nothing, not even the members.
		s.errorTo(c, codec.CodeNotMember, req, nil, fmt.Sprintf("you are not a member of group %d", gid))
		return
	}
	s.reply(c, info.Append(nil))
}

func (s *Server) groupList(c *Conn, req uint32, user uint64) {
	list, err := s.groups.List(user)
	if err != nil {
		s.groupError(c, req, err)
		return
	}
	s.reply(c, (&codec.Groups{Req: req, Groups: list}).Append(nil))
}

// usersExist refuses a member list naming an id that is no account.
func (s *Server) usersExist(users []uint64) error {
	for _, u := range users {
		if !s.accounts.Exists(u) {
			return fmt.Errorf("%w: user %d does not exist", group.ErrInvalid, u)
		}
	}
	return nil
}

// groupEvent queues a GROUP_EVENT for notify. g.Mu must be held, so that
// the event keeps its place among the group's messages.
func (s *Server) groupEvent(g *group.Group, kind codec.GroupEventKind, actor uint64, users codec.UserList, notify []uint64) {
	ev := offline.GroupEvent{Group: g.ID, Kind: kind, Actor: actor,
		Name: append([]byte(nil), g.Name()...), Users: append(codec.UserList(nil), users...)}
	if err := s.inbox.SubmitGroupEvent(ev, notify); err != nil {
		s.log.Error("group event not queued")
	}
}

// sendGroup fans a SEND out to the group's members but the sender, under
// the group's read lock.
func (s *Server) sendGroup(c *Conn, f *codec.Send, user uint64) {
	g, err := s.groups.Get(f.To)
	if err != nil {
		code, detail := s.groupCode(err)
		s.errorTo(c, code, 0, &f.ID, detail)
		return
	}
	g.Mu.RLock()
	defer g.Mu.RUnlock()
	if _, ok := g.Role(user); !ok {
		s.errorTo(c, codec.CodeNotMember, 0, &f.ID, fmt.Sprintf("you are not a member of group %d", f.To))
		return
	}
	members := make([]uint64, 0, g.Len())
	g.Each(func(u uint64) {
		if u != user {
			members = append(members, u)
		}
	})
	m := &offline.Message[*Conn]{
		Group: g.ID, From: user, ID: f.ID,
		Body: append([]byte(nil), f.Body...), Dup: f.Flags&codec.FlagDup != 0, Sender: c,
	}
	if err := s.inbox.SubmitGroup(m, members); err != nil {
		s.errorTo(c, codec.CodeBusy, 0, &f.ID, "message store saturated; not stored, retry")
	}
}

// typingGroup relays IS_TYPING to the group's online members. Only a
// member may type to a group: others get ERROR 40 or 41, like a SEND.
func (s *Server) typingGroup(c *Conn, user uint64, f *codec.Typing) {
	g, err := s.groups.Get(f.To)
	if err != nil {
		code, detail := s.groupCode(err)
		s.errorTo(c, code, 0, nil, "TYPING: "+detail)
		return
	}
	frame := (&codec.IsTyping{From: user, Group: f.To, State: f.State}).Append(nil)
	b := s.batch()
	g.Mu.RLock()
	_, member := g.Role(user)
	if member {
		g.Each(func(u uint64) {
			if to, ok := s.sessions.Lookup(u); ok && u != user && to.Write(frame) {
				b.Add(to)
			}
		})
	}
	g.Mu.RUnlock()
	s.flush(b)
	if !member {
		s.errorTo(c, codec.CodeNotMember, 0, nil, fmt.Sprintf("TYPING: you are not a member of group %d", f.To))
	}
}

func ids(l codec.UserList) []uint64 {
	out := make([]uint64, l.Len())
	for i := range out {
		out[i] = l.At(i)
	}
	return out
}

func (s *Server) groupError(c *Conn, req uint32, err error) {
	code, detail := s.groupCode(err)
	s.errorTo(c, code, req, nil, detail)
}

// groupCode maps a group error to its code and the ERROR's detail text.
func (s *Server) groupCode(err error) (codec.Code, string) {
	detail := strings.TrimPrefix(err.Error(), "group: ")
	switch {
	case errors.Is(err, group.ErrUnknown):
		return codec.CodeUnknownGroup, detail
	case errors.Is(err, group.ErrNotMember):
		return codec.CodeNotMember, detail
	case errors.Is(err, group.ErrNotAdmin):
		return codec.CodeNotAdmin, detail
	case errors.Is(err, group.ErrFull):
		return codec.CodeGroupFull, detail
	case errors.Is(err, group.ErrInvalid):
		return codec.CodeInvalidGroup, detail
	case errors.Is(err, group.ErrAlreadyMember):
		return codec.CodeAlreadyMember, detail
	case errors.Is(err, group.ErrLastAdmin):
		return codec.CodeLastAdmin, detail
	}
	s.log.Error("group operation failed", zap.Error(err))
	return codec.CodeInternal, "group change not stored; retry"
}
