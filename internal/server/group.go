package server

import (
	"errors"
	"fmt"
	"strings"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/cluster"
	"github.com/chatd/chatd/internal/group"
	"github.com/chatd/chatd/internal/offline"
	"go.uber.org/zap"
)

// groupFrame handles the group management frames. It decodes and copies
// the request on the event loop and runs it on a commit lane (see
// commits): a create or change is answered once it is durable, and no
// fsync runs on the event loop or under a lock the event loop takes. In a
// cluster the group's home runs it (cluster_groups.go).
func (s *Server) groupFrame(c *Conn, t codec.Type, body []byte) error {
	user := c.State.user.Load()
	f := codec.New(t)
	if err := f.Decode(body); err != nil {
		return s.malformed(c, err)
	}
	req, key, job := s.groupJob(user, f)
	if t == codec.TypeGroupCreate && s.storageFull() {
		s.errorTo(c, codec.CodeStorageFull, req, nil, "the server's disk is nearly full; retry later")
		return nil
	}
	if s.cl != nil {
		if t == codec.TypeGroupList {
			go func() { s.reply(c, s.groupListAll(req, user)); c.Flush() }()
			return nil
		}
		if !s.local(key) {
			s.groupRemote(c, req, key, user, t, body)
			return nil
		}
	}
	if !s.commits.submit(key, func() { s.reply(c, job()); c.Flush() }) {
		s.counters.busy.Add(1)
		s.errorTo(c, codec.CodeBusy, req, nil, "too many group requests queued; retry")
	}
	return nil
}

// groupJob turns a decoded group frame into its request number, the id
// whose commit lane (and, in a cluster, home) runs it (the group's, or
// the user's for requests not about one group), and the work, which
// returns the answer frame. The work owns copies of what it needs.
func (s *Server) groupJob(user uint64, f codec.Frame) (req uint32, key uint64, job func() []byte) {
	switch f := f.(type) {
	case *codec.GroupCreate:
		req, key = f.Req, user
		name, users := append([]byte(nil), f.Name...), ids(f.Users)
		job = func() []byte { return s.groupCreate(req, user, name, users) }
	case *codec.GroupAdd:
		req, key = f.Req, f.Group
		ch := group.Change{Kind: codec.GroupAdded, Actor: user, Users: ids(f.Users)}
		job = func() []byte { return s.groupChange(req, key, ch) }
	case *codec.GroupRemove:
		req, key = f.Req, f.Group
		ch := group.Change{Kind: codec.GroupRemoved, Actor: user, Users: ids(f.Users)}
		job = func() []byte { return s.groupChange(req, key, ch) }
	case *codec.GroupLeave:
		req, key = f.Req, f.Group
		ch := group.Change{Kind: codec.GroupLeft, Actor: user}
		job = func() []byte { return s.groupChange(req, key, ch) }
	case *codec.GroupRename:
		req, key = f.Req, f.Group
		ch := group.Change{Kind: codec.GroupRenamed, Actor: user, Name: append([]byte(nil), f.Name...)}
		job = func() []byte { return s.groupChange(req, key, ch) }
	case *codec.GroupAdmin:
		req, key = f.Req, f.Group
		ch := group.Change{Kind: codec.GroupPromoted, Actor: user, Users: []uint64{f.User}}
		if !f.Admin {
			ch.Kind = codec.GroupDemoted
		}
		job = func() []byte { return s.groupChange(req, key, ch) }
	case *codec.GroupGet:
		req, key = f.Req, f.Group
		job = func() []byte { return s.groupGet(req, user, key) }
	case *codec.GroupList:
		req, key = f.Req, user
		job = func() []byte { return s.groupList(req, user) }
	}
	return req, key, job
}

// groupCreate runs on a commit lane. Every member, the creator included,
// gets a GROUP_EVENT created; the creator's answer is GROUP_INFO. In a
// cluster the group's id is in the creator's home shard: this node's.
func (s *Server) groupCreate(req uint32, user uint64, name []byte, users []uint64) []byte {
	if err := s.usersExist(users); err != nil {
		return s.groupErrFrame(req, err)
	}
	if err := s.addsAllowed(user, users); err != nil {
		return s.groupErrFrame(req, err)
	}
	var info codec.GroupInfo
	publish := func(g *group.Group) {
		info = codec.GroupInfo{Req: req, Group: g.ID, Name: append([]byte(nil), g.Name()...), Members: g.Members()}
		all := make([]uint64, len(info.Members))
		for i, m := range info.Members {
			all[i] = m.User
		}
		s.groupEvent(g, codec.GroupCreated, user, codec.Users(all...), all)
	}
	var err error
	if s.cl == nil {
		_, err = s.groups.Create(user, name, users, publish)
	} else {
		_, err = s.groups.CreateIn(cluster.ShardOf(user), user, name, users, publish)
	}
	if err != nil {
		return s.groupErrFrame(req, err)
	}
	return info.Append(nil)
}

// groupChange runs on the group's commit lane: it makes the change durable,
// tells the members (and anyone removed) through their inboxes, then
// answers OK.
func (s *Server) groupChange(req uint32, gid uint64, ch group.Change) []byte {
	g, err := s.groups.Get(gid)
	if err == nil {
		err = s.usersExist(ch.Users)
	}
	if err == nil && ch.Kind == codec.GroupAdded {
		err = s.addsAllowed(ch.Actor, ch.Users)
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
		return s.groupErrFrame(req, err)
	}
	return (&codec.OK{Req: req}).Append(nil)
}

func (s *Server) groupGet(req uint32, user, gid uint64) []byte {
	g, err := s.groups.Get(gid)
	if err != nil {
		return s.groupErrFrame(req, err)
	}
	g.Mu.RLock()
	_, member := g.Role(user)
	info := &codec.GroupInfo{Req: req, Group: g.ID, Name: append([]byte(nil), g.Name()...), Members: g.Members()}
	g.Mu.RUnlock()
	if !member {
		// Non-members learn nothing, not even the members.
		return codec.AppendError(nil, codec.CodeNotMember, req, nil, fmt.Sprintf("you are not a member of group %d", gid))
	}
	return info.Append(nil)
}

func (s *Server) groupList(req uint32, user uint64) []byte {
	list, err := s.groups.List(user)
	if err != nil {
		return s.groupErrFrame(req, err)
	}
	return (&codec.Groups{Req: req, Groups: list}).Append(nil)
}

// usersExist refuses a member list naming an id that is no account. In
// a cluster the users homed elsewhere are checked at their homes.
func (s *Server) usersExist(users []uint64) error {
	here, away, err := s.byHome(users)
	if err != nil {
		return err
	}
	for _, u := range here {
		if !s.accounts.Exists(u) {
			return fmt.Errorf("%w: user %d does not exist", group.ErrInvalid, u)
		}
	}
	for _, users := range away {
		if err := s.usersExistAt(users); err != nil {
			return err
		}
	}
	return nil
}

// byHome splits users into those homed here (every one, on a single
// node) and those homed elsewhere, by home.
func (s *Server) byHome(users []uint64) (here []uint64, away map[string][]uint64, err error) {
	for _, u := range users {
		if s.cl == nil || s.local(u) {
			here = append(here, u)
			continue
		}
		home, err := s.homeOf(cluster.ShardOf(u))
		if err != nil {
			return nil, nil, err
		}
		if away == nil {
			away = map[string][]uint64{}
		}
		away[home] = append(away[home], u)
	}
	return here, away, nil
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

// sendGroup fans a SEND out to the group's members but the sender; in a
// cluster a group homed elsewhere gets it from its home.
func (s *Server) sendGroup(c *Conn, f *codec.Send, user uint64) {
	if s.cl != nil && (!s.local(f.To) || s.rm.inFlight(c, f.To)) {
		home, err := s.homeOf(cluster.ShardOf(f.To))
		if err != nil { // as for a 1:1 SEND: the client resends in order
			s.errorTo(c, codec.CodeUnavailable, 0, &f.ID, err.Error())
			c.Close()
			return
		}
		if !s.sendAway(c, f, user, home) {
			c.Close()
		}
		return
	}
	m := &offline.Message[*Conn]{
		Group: f.To, From: user, ID: f.ID,
		Body: append([]byte(nil), f.Body...), Dup: f.Flags&codec.FlagDup != 0, Sender: c, Stamp: mono(),
	}
	switch code, detail := s.groupMessage(m, nil); code {
	case 0:
	case codec.CodeBusy, codec.CodeStorageFull: // refused for now: later SENDs to the group wait for it
		if !s.refuseForNow(c, f, code, detail) {
			c.Close()
		}
	default:
		s.errorTo(c, code, 0, &f.ID, detail)
	}
}

// groupMessage queues m, from a member of group m.Group, for the other
// members, under the group's read lock so that it keeps its place among
// the group's events; queued runs just before it is queued. A refusal
// comes back as its code and detail.
func (s *Server) groupMessage(m *offline.Message[*Conn], queued func()) (codec.Code, string) {
	g, err := s.groups.Get(m.Group)
	if err != nil {
		return s.groupCode(err)
	}
	g.Mu.RLock()
	defer g.Mu.RUnlock()
	if _, ok := g.Role(m.From); !ok {
		return codec.CodeNotMember, fmt.Sprintf("you are not a member of group %d", m.Group)
	}
	members := make([]uint64, 0, g.Len())
	g.Each(func(u uint64) {
		if u != m.From {
			members = append(members, u)
		}
	})
	if s.fo != nil && s.fo.full() {
		s.counters.busy.Add(1)
		return codec.CodeBusy, "messages for other nodes' members are queued up; not stored, retry"
	}
	if queued != nil {
		queued()
	}
	if err := s.inbox.SubmitGroup(m, members); err != nil {
		s.counters.busy.Add(1)
		return codec.CodeBusy, "message store saturated; not stored, retry"
	}
	return 0, ""
}

// typingGroup relays IS_TYPING to the group's online members. Only a
// member may type to a group: others get ERROR 40 or 41, like a SEND. In
// a cluster the group's home checks and relays it to the other nodes.
func (s *Server) typingGroup(c *Conn, user uint64, f *codec.Typing) {
	if s.cl != nil && !s.local(f.To) {
		if home, err := s.homeOf(cluster.ShardOf(f.To)); err == nil {
			s.cl.node.Publish(home, "gtyping", groupTypingMsg(user, f.To, f.State, nil))
		}
		return
	}
	g, err := s.groups.Get(f.To)
	if err != nil {
		code, detail := s.groupCode(err)
		s.errorTo(c, code, 0, nil, "TYPING: "+detail)
		return
	}
	if !s.typingMembers(g, user, f.State) {
		s.errorTo(c, codec.CodeNotMember, 0, nil, fmt.Sprintf("TYPING: you are not a member of group %d", f.To))
	}
}

// typingMembers writes IS_TYPING to the online members of g here, and in
// a cluster has the other nodes do the same; false if user is no member.
func (s *Server) typingMembers(g *group.Group, user uint64, state codec.TypingState) bool {
	frame := (&codec.IsTyping{From: user, Group: g.ID, State: state}).Append(nil)
	b := s.batch()
	var members []uint64
	g.Mu.RLock()
	_, member := g.Role(user)
	if member {
		g.Each(func(u uint64) {
			if s.cl != nil {
				members = append(members, u)
			}
			if to, ok := s.sessions.Lookup(u); ok && u != user && to.Write(frame) {
				b.Add(to)
			}
		})
	}
	g.Mu.RUnlock()
	s.flush(b)
	if member && s.cl != nil {
		msg := groupTypingMsg(user, g.ID, state, members)
		for _, node := range s.cl.node.LiveNodes() {
			if node != s.cl.node.Name() {
				s.cl.node.Publish(node, "gtyping", msg)
			}
		}
	}
	return member
}

func ids(l codec.UserList) []uint64 {
	out := make([]uint64, l.Len())
	for i := range out {
		out[i] = l.At(i)
	}
	return out
}

func (s *Server) groupErrFrame(req uint32, err error) []byte {
	code, detail := s.groupCode(err)
	return codec.AppendError(nil, code, req, nil, detail)
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
	case errors.Is(err, errUnavailable):
		return codec.CodeUnavailable, err.Error()
	case errors.Is(err, errAddRefused):
		return codec.CodeAddRefused, err.Error()
	}
	s.log.Error("group operation failed", zap.Error(err))
	return codec.CodeInternal, "group change not stored; retry"
}
