package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/history"
)

// handle runs one line the person typed.
func (s *session) handle(line string) {
	cmd, rest, _ := strings.Cut(line, " ")
	rest = strings.TrimSpace(rest)
	switch {
	case cmd == "/to" && rest != "":
		s.setPeer(rest)
		s.mu.Lock()
		s.chosen = true
		s.mu.Unlock()
	case cmd == "/read":
		s.markRead()
	case cmd == "/history":
		s.history(rest)
	case cmd == "/search":
		s.search(rest)
	case cmd == "/watch" && rest != "":
		s.watch(rest)
	case (cmd == "/verify" || cmd == "/accept") && rest != "":
		if s.e2e == nil {
			s.out.say("! end-to-end encryption is off (--no-e2e)")
			return
		}
		if cmd == "/verify" {
			s.verify(rest)
		} else {
			s.accept(rest)
		}
	case cmd == "/group", cmd == "/groups", cmd == "/g":
		s.groupCommand(line)
	case cmd == "/block", cmd == "/unblock", cmd == "/blocked":
		s.blockCommand(cmd, rest)
	case cmd == "/sessions", cmd == "/end", cmd == "/label":
		s.sessionsCommand(cmd, rest)
	case strings.HasPrefix(line, "@"):
		name, text, _ := strings.Cut(line[1:], " ")
		if text = strings.TrimSpace(text); name == "" || text == "" {
			s.out.say("! @NAME TEXT sends TEXT to NAME")
			return
		}
		s.sendTo(name, text)
	case cmd == "/help":
		s.out.raw(chatHelp)
	case strings.HasPrefix(line, "/"):
		s.out.say("! unknown command %s; the commands are:", cmd)
		s.out.raw(chatHelp)
	default:
		s.mu.Lock()
		peer, group := s.peer, s.group
		s.mu.Unlock()
		switch {
		case group != 0:
			s.send(group, true, line)
		case peer != "":
			s.sendTo(peer, line)
		default:
			s.out.say("no contact yet: /to NAME, @NAME TEXT, or /g GROUP (replies go to whoever writes first)")
		}
	}
}

func (s *session) sendTo(name, text string) {
	id, err := s.resolve(name)
	if err != nil {
		s.out.say("! %v", err)
		return
	}
	s.send(id, false, text)
}

// send stores the message, then sends it under the same id: its ticks
// find it in the store, and a crash before SENT sends it again next run.
func (s *session) send(to uint64, group bool, text string) {
	id := client.NewID()
	if s.e2e != nil {
		s.sendE2E(id, to, group, text)
		return
	}
	s.mu.Lock()
	self := s.self
	s.mu.Unlock()
	if err := s.store.AddOutgoing(history.Message{ID: id, Chat: to, Group: group, From: self, Time: time.Now(), Body: text}); err != nil {
		s.out.say("! not sent: %v", err)
		return
	}
	var flags codec.SendFlags
	if group {
		flags = codec.FlagGroup
	}
	s.cl.SendID(id, flags, to, []byte(text))
	if s.cl.Conn() == nil {
		s.out.say("  … not connected: %s goes (✓) when the connection is back", quote(text))
	}
}

func (s *session) setPeer(name string) {
	if _, err := s.resolve(name); err != nil {
		s.out.say("! %v", err)
		return
	}
	s.mu.Lock()
	s.peer, s.group = name, 0
	s.mu.Unlock()
	s.out.say("talking to %s", name)
}

// markRead sends read receipts for the current chat's unread messages.
func (s *session) markRead() {
	s.mu.Lock()
	peer, group := s.peer, s.group
	s.mu.Unlock()
	var chat uint64
	what := "group " + strconv.FormatUint(group, 10)
	switch {
	case group != 0:
		chat = group
	case peer != "":
		id, err := s.resolve(peer)
		if err != nil {
			s.out.say("! %v", err)
			return
		}
		chat, what = id, peer
	default:
		s.out.say("no contact yet: /read marks the current chat's messages read (/to NAME first)")
		return
	}
	unread, err := s.store.Unread(chat, group != 0)
	if err != nil {
		s.out.say("! %v", err)
		return
	}
	if len(unread) == 0 {
		s.out.say("nothing unread from %s", what)
		return
	}
	c := s.cl.Conn()
	if c == nil {
		s.out.say("! not connected; /read again in a moment")
		return
	}
	bySender := map[uint64][]codec.MsgID{} // READ names one sender
	for _, m := range unread {
		bySender[m.From] = append(bySender[m.From], m.ID)
	}
	var done []codec.MsgID
	for from, ids := range bySender {
		for len(ids) > 0 {
			n := min(len(ids), codec.MaxIDs)
			if err := c.MarkRead(from, group, ids[:n]...); err != nil {
				s.out.say("! %v", err)
				break
			}
			done = append(done, ids[:n]...)
			ids = ids[n:]
		}
	}
	if err := s.store.MarkRead(done...); err != nil {
		s.out.say("! %v", err)
	}
	s.out.say("marked %d message(s) from %s read", len(done), what)
}

// history shows the last messages of a chat from the local store.
func (s *session) history(args string) {
	f := strings.Fields(args)
	limit := 20
	if len(f) > 0 {
		if n, err := strconv.Atoi(f[len(f)-1]); err == nil && n > 0 {
			limit, f = n, f[:len(f)-1]
		}
	}
	s.mu.Lock()
	peer, group := s.peer, s.group
	s.mu.Unlock()
	var chat uint64
	isGroup := false
	var what string
	switch {
	case len(f) > 0 && strings.HasPrefix(f[0], "#"):
		id, err := strconv.ParseUint(f[0][1:], 10, 64)
		if err != nil {
			s.out.say("! /history #GROUP wants a group number, as /groups lists")
			return
		}
		chat, isGroup, what = id, true, "group "+f[0][1:]
	case len(f) > 0:
		id, err := s.resolve(f[0])
		if err != nil {
			s.out.say("! %v", err)
			return
		}
		chat, what = id, f[0]
	case group != 0:
		chat, isGroup, what = group, true, fmt.Sprintf("group %d", group)
	case peer != "":
		id, err := s.resolve(peer)
		if err != nil {
			s.out.say("! %v", err)
			return
		}
		chat, what = id, peer
	default:
		s.out.say("/history NAME shows past messages with NAME (or /to NAME first)")
		return
	}
	msgs, err := s.store.History(chat, isGroup, limit)
	s.list(msgs, err, false, fmt.Sprintf("no messages with %s on this machine", what),
		fmt.Sprintf("-- last %d with %s --", len(msgs), what))
}

// list prints /history's or /search's result: the error, none or a
// header and each message (withChat names the chat each belongs to).
func (s *session) list(msgs []history.Message, err error, withChat bool, none, header string) {
	if err != nil {
		s.out.say("! %v", err)
		return
	}
	if len(msgs) == 0 {
		s.out.say("%s", none)
		return
	}
	s.out.say("%s", header)
	for _, m := range msgs {
		s.out.say("%s", s.formatStored(m, withChat))
	}
}

// search finds messages in the local store; the server never sees it.
func (s *session) search(words string) {
	if words == "" {
		s.out.say("/search WORDS finds messages holding all WORDS")
		return
	}
	msgs, err := s.store.Search(words, 50)
	s.list(msgs, err, true, fmt.Sprintf("no messages match %q", words),
		fmt.Sprintf("-- %d message(s) match %q --", len(msgs), words))
}

// formatStored renders a stored message for /history and /search; with
// where it names the chat too.
func (s *session) formatStored(m history.Message, where bool) string {
	var b strings.Builder
	b.WriteString("[" + m.Time.Format("Jan 2 15:04") + "] ")
	from := s.name(m.From)
	if m.Outgoing {
		from = "me"
	}
	b.WriteString(from)
	if where {
		switch {
		case m.Group:
			fmt.Fprintf(&b, " in group %d", m.Chat)
		case m.Outgoing:
			b.WriteString(" → " + s.name(m.Chat))
		}
	}
	b.WriteString(": " + m.Body)
	if m.Outgoing {
		b.WriteString("  " + tickMark(m.State))
	}
	return b.String()
}

func (s *session) watch(name string) {
	id, err := s.resolve(name)
	if err != nil {
		s.out.say("! %v", err)
		return
	}
	if c := s.cl.Conn(); c != nil {
		c.Subscribe(id)
	} else {
		s.out.say("! not connected; try again in a moment")
	}
}

// requestConn returns the connection and a deadline for a request
// command, or says it is not connected and returns nil.
func (s *session) requestConn() (*client.Conn, context.Context, context.CancelFunc) {
	c := s.cl.Conn()
	if c == nil {
		s.out.say("! not connected; try again in a moment")
		return nil, nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	return c, ctx, cancel
}

// resolve turns a name into a user id: from memory, the store's
// contacts, or the server (once).
func (s *session) resolve(name string) (uint64, error) {
	s.mu.Lock()
	id, ok := s.ids[name]
	s.mu.Unlock()
	if ok {
		return id, nil
	}
	c := s.cl.Conn()
	if c == nil {
		return 0, fmt.Errorf("%s: not connected, and not a contact yet; try again in a moment", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	id, err := c.LookupName(ctx, name)
	var e *codec.Error
	if errors.As(err, &e) && (e.Code == codec.CodeUnknownUser || e.Code == codec.CodeInvalidName) {
		return 0, fmt.Errorf("no user %q%s", name, caseHint(name))
	}
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	s.learn(id, name)
	return id, nil
}

// caseHint explains a name with capitals: names are case-sensitive, and
// lower case.
func caseHint(name string) string {
	if lower := strings.ToLower(name); lower != name {
		return fmt.Sprintf(" (names are case-sensitive and lower case: try %q)", lower)
	}
	return " (names are case-sensitive)"
}

func (s *session) learn(id uint64, name string) {
	s.mu.Lock()
	s.ids[name], s.names[id] = id, name
	s.mu.Unlock()
	if err := s.store.SetContact(id, name); err != nil {
		s.out.say("! %v", err)
	}
}

// name turns a user id into a name, asking the server once.
func (s *session) name(id uint64) string {
	s.mu.Lock()
	n, ok := s.names[id]
	s.mu.Unlock()
	if ok {
		return n
	}
	if c := s.cl.Conn(); c != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if n, err := c.LookupUser(ctx, id); err == nil {
			s.learn(id, n)
			return n
		}
	}
	return fmt.Sprintf("user%d", id)
}

func (s *session) nameList(ids []uint64) string {
	var n []string
	for _, id := range ids {
		n = append(n, s.name(id))
	}
	return strings.Join(n, ", ")
}
