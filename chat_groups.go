package main

import (
	"fmt"
	"strings"

	"github.com/chatd/chatd/codec"
)

// groupCommand handles /group, /groups and /g.
func (s *session) groupCommand(line string) {
	c, ctx, cancel := s.requestConn()
	if c == nil {
		return
	}
	defer cancel()
	f := strings.Fields(line)
	users := func(names []string) ([]uint64, bool) {
		var ids []uint64
		for _, n := range names {
			id, err := s.resolve(n)
			if err != nil {
				s.out.say("! %v", err)
				return nil, false
			}
			ids = append(ids, id)
		}
		return ids, true
	}
	s.mu.Lock()
	current := s.group
	s.mu.Unlock()
	var err error
	switch {
	case f[0] == "/groups":
		var list []codec.GroupSummary
		if list, err = c.Groups(ctx); err == nil {
			if len(list) == 0 {
				s.out.say("no groups yet: /group new NAME USER... creates one")
			}
			for _, g := range list {
				s.out.say("  group %d: %s", g.Group, g.Name)
			}
		}
	case f[0] == "/g" && len(f) == 2:
		var id uint64
		if _, err = fmt.Sscan(strings.TrimPrefix(f[1], "#"), &id); err == nil {
			var info *codec.GroupInfo
			if info, err = c.GroupInfo(ctx, id); err == nil {
				s.mu.Lock()
				s.group, s.peer, s.chosen = id, "", true
				s.mu.Unlock()
				s.out.say("talking to group %d (%s): %s", id, info.Name, s.members(info))
			}
		}
	case len(f) >= 3 && f[0] == "/group" && f[1] == "new":
		if ids, ok := users(f[3:]); ok {
			var info *codec.GroupInfo
			if info, err = c.CreateGroup(ctx, f[2], ids...); err == nil {
				s.mu.Lock()
				s.group, s.peer, s.chosen = info.Group, "", true
				s.mu.Unlock()
				s.out.say("created group %d (%s) with %s; talking to it", info.Group, info.Name, s.members(info))
			}
		}
	case len(f) >= 3 && f[0] == "/group" && (f[1] == "add" || f[1] == "remove"):
		if current == 0 {
			s.out.say("! /g GROUP first: /group %s changes the current group", f[1])
			return
		}
		if ids, ok := users(f[2:]); ok {
			if f[1] == "add" {
				err = c.AddMembers(ctx, current, ids...)
			} else {
				err = c.RemoveMembers(ctx, current, ids...)
			}
		}
	case len(f) == 2 && f[0] == "/group" && f[1] == "leave":
		if current == 0 {
			s.out.say("! /g GROUP first: /group leave leaves the current group")
			return
		}
		if err = c.LeaveGroup(ctx, current); err == nil {
			s.mu.Lock()
			s.group = 0
			s.mu.Unlock()
			s.out.say("left group %d", current)
		}
	default:
		s.out.say("! the group commands are:")
		s.out.raw(chatHelp)
	}
	if err != nil {
		s.out.say("! %v", err)
	}
}

// members lists a group's members by name, admins marked.
func (s *session) members(info *codec.GroupInfo) string {
	var n []string
	for _, m := range info.Members {
		name := s.name(m.User)
		if m.Role == codec.RoleAdmin {
			name += " (admin)"
		}
		n = append(n, name)
	}
	return strings.Join(n, ", ")
}

// groupEvent says what changed in a group, naming who.
func (s *session) groupEvent(f *codec.GroupEvent) string {
	var users []uint64
	for i := 0; i < f.Users.Len(); i++ {
		users = append(users, f.Users.At(i))
	}
	who := s.nameList(users)
	actor := s.name(f.Actor)
	var what string
	switch f.Kind {
	case codec.GroupCreated:
		what = fmt.Sprintf("%s created it with %s", actor, who)
	case codec.GroupAdded:
		what = fmt.Sprintf("%s added %s", actor, who)
	case codec.GroupRemoved:
		what = fmt.Sprintf("%s removed %s", actor, who)
	case codec.GroupLeft:
		what = fmt.Sprintf("%s left", actor)
	case codec.GroupRenamed:
		what = fmt.Sprintf("%s renamed it to %q", actor, f.Name)
	case codec.GroupPromoted:
		what = fmt.Sprintf("%s made %s admin", actor, who)
	case codec.GroupDemoted:
		what = fmt.Sprintf("%s revoked admin from %s", actor, who)
	default:
		what = fmt.Sprintf("%s: %v %s", actor, f.Kind, who)
	}
	return fmt.Sprintf("  group %d (%s): %s", f.Group, f.Name, what)
}
