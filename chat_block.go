package main

import (
	"strings"

	"github.com/chatd/chatd/codec"
)

// blockCommand handles /block NAME, /unblock NAME and /blocked.
func (s *session) blockCommand(cmd, name string) {
	c, ctx, cancel := s.requestConn()
	if c == nil {
		return
	}
	defer cancel()
	if cmd == "/blocked" {
		ids, err := c.List(ctx, codec.ListBlocked)
		switch {
		case err != nil:
			s.out.say("! %v", err)
		case len(ids) == 0:
			s.out.say("you have blocked no one")
		default:
			names := make([]string, len(ids))
			for i, id := range ids {
				names[i] = s.name(id)
			}
			s.out.say("blocked: %s", strings.Join(names, ", "))
		}
		return
	}
	if name == "" {
		s.out.say("! %s NAME", cmd)
		return
	}
	id, err := s.resolve(name)
	if err != nil {
		s.out.say("! %v", err)
		return
	}
	if cmd == "/block" {
		if err = c.Block(ctx, id); err == nil {
			s.out.say("blocked %s: their messages and group adds no longer reach you and they see no status of yours; they are not told", name)
		}
	} else {
		if err = c.Unblock(ctx, id); err == nil {
			s.out.say("unblocked %s", name)
		}
	}
	if err != nil {
		s.out.say("! %v", err)
	}
}
