package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/chatd/chatd/codec"
)

// Sessions in chat: /sessions lists the account's devices, numbered;
// /end N ends the Nth of that listing (its device is logged out and must
// log in with the password again); /label TEXT names this device in
// everyone's listing. Numbers rather than session ids because ids are 16
// hex digits nobody wants to type; they refer to the last listing, so
// /end always ends the session the person saw.

// sessionsCommand handles /sessions, /end N and /label TEXT.
func (s *session) sessionsCommand(cmd, arg string) {
	c, ctx, cancel := s.requestConn()
	if c == nil {
		return
	}
	defer cancel()
	switch cmd {
	case "/sessions":
		list, err := c.Sessions(ctx)
		if err != nil {
			s.out.say("! %v", err)
			return
		}
		s.mu.Lock()
		s.listed = list
		s.mu.Unlock()
		s.out.say("your sessions (devices logged in), most recent first:")
		for i, x := range list {
			s.out.say("  %d. %s", i+1, describeSession(x))
		}
		s.out.say("/end N logs device N out; /label TEXT names this one")
	case "/end":
		n, err := strconv.Atoi(arg)
		s.mu.Lock()
		listed := s.listed
		s.mu.Unlock()
		switch {
		case len(listed) == 0:
			s.out.say("! /sessions first: /end N ends the Nth session it lists")
			return
		case err != nil || n < 1 || n > len(listed):
			s.out.say("! /end N, with N from 1 to %d (the numbers /sessions showed)", len(listed))
			return
		}
		x := listed[n-1]
		if err := c.EndSession(ctx, x.Session); err != nil {
			s.out.say("! %v", err)
			return
		}
		if x.Flags&codec.SessionCurrent != 0 {
			s.out.say("ended this session: this device is logged out")
			return
		}
		s.out.say("ended session %d (%s): that device is logged out and needs the password to come back", n, sessionName(x))
	case "/label":
		if arg == "" {
			s.out.say("! /label TEXT names this device in /sessions")
			return
		}
		if err := c.LabelSession(ctx, arg); err != nil {
			s.out.say("! %v", err)
			return
		}
		s.out.say("this session is now labelled %q", arg)
	}
}

// describeSession is one line of /sessions.
func describeSession(x codec.SessionInfo) string {
	var b strings.Builder
	b.WriteString(sessionName(x))
	switch {
	case x.Flags&codec.SessionCurrent != 0:
		b.WriteString(" (this one)")
	case x.Flags&codec.SessionOnline != 0:
		b.WriteString(" (online)")
	}
	fmt.Fprintf(&b, ", last used %s", when(x.LastSeen))
	if len(x.Addr) > 0 {
		fmt.Fprintf(&b, " from %s", printable(string(x.Addr)))
	}
	fmt.Fprintf(&b, ", logged in %s", when(x.Created))
	return b.String()
}

// sessionName is a session's label, or its id when it has none.
func sessionName(x codec.SessionInfo) string {
	if len(x.Label) > 0 {
		return printable(string(x.Label))
	}
	return fmt.Sprintf("unnamed %016x", x.Session)
}

func when(ms uint64) string {
	t := time.UnixMilli(int64(ms))
	if time.Since(t) < 24*time.Hour {
		return t.Format("15:04")
	}
	return t.Format("Jan 2 2006")
}

// printable keeps a label another device set from moving the cursor or
// changing the terminal: control characters show as '?'.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return '?'
		}
		return r
	}, s)
}
