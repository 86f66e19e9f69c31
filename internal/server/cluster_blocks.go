package server

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/block"
)

// Lists across nodes (block.go). Each user's lists live at the user's
// home, in its package block store, and every check of a list runs where
// that list is:
//
//   - "lists": BLOCK, UNBLOCK, CONTACT, LIST_GET and GROUP_ADDS from a
//     session on another node. The home runs the frame on the user's
//     commit lane, as on one node, and answers with the frame for the
//     client. One node's requests to one home are sent in order
//     (cluster.Node.Send), so one client's list frames keep theirs.
//   - a SEND or TYPING to a user homed elsewhere is checked against the
//     recipient's lists at the recipient's home ("store", "typing").
//   - "adds": a group create or add naming users homed elsewhere asks
//     their homes whether they take adds from the actor.
//
// The sender's own block list (a SEND to a user one blocked gets ERROR
// 70; TYPING to them and READ receipts for them are dropped) is read on
// the sender's event loop, so a node holding a session of a user homed
// elsewhere keeps a copy of that user's block list: the home sends it
// with the login's answer (acctReply.Blocked), and the session's own
// BLOCK and UNBLOCK update it when the home answers OK. A user has one
// session in a cluster, and only it changes its list, so the copy stays
// the home's. A shard move closes the sessions of the users it moves
// (closeMoved): they log in again and get the copy anew.

// ownLists is the copy of the block list of a user homed elsewhere,
// kept for its session c. It is never changed once stored: a change
// stores a new one.
type ownLists struct {
	c       *Conn
	blocked map[uint64]struct{}
}

// mirrorLists keeps blocked, the block list user's home sent at login,
// for c.
func (s *Server) mirrorLists(c *Conn, user uint64, blocked []uint64) {
	l := &ownLists{c: c, blocked: make(map[uint64]struct{}, len(blocked))}
	for _, u := range blocked {
		l.blocked[u] = struct{}{}
	}
	s.cl.lists.Store(user, l)
}

// mirrorBlock records in c's copy that its user blocked (on) or
// unblocked other, once the home said OK.
func (s *Server) mirrorBlock(c *Conn, user, other uint64, on bool) {
	l := &ownLists{c: c, blocked: map[uint64]struct{}{}}
	if v, ok := s.cl.lists.Load(user); ok && v.(*ownLists).c == c {
		for u := range v.(*ownLists).blocked {
			l.blocked[u] = struct{}{}
		}
	}
	if on {
		l.blocked[other] = struct{}{}
	} else {
		delete(l.blocked, other)
	}
	s.cl.lists.Store(user, l)
}

// forgetLists drops c's copy when its session ends.
func (s *Server) forgetLists(c *Conn, user uint64) {
	if v, ok := s.cl.lists.Load(user); ok && v.(*ownLists).c == c {
		s.cl.lists.CompareAndDelete(user, v)
	}
}

// ownBlock reports whether c's user blocked other: from the session's
// copy when its user is homed elsewhere, else from the store here. The
// copy is looked up first, not the home: a home frozen for a move is not
// "here", and the store would then say nothing is blocked.
func (s *Server) ownBlock(c *Conn, other uint64) bool {
	user := c.State.user.Load()
	if s.cl != nil {
		if v, ok := s.cl.lists.Load(user); ok && v.(*ownLists).c == c {
			_, blocked := v.(*ownLists).blocked[other]
			return blocked
		}
	}
	return s.blocks.Blocks(user, other)
}

// startClusterLists serves the other nodes' list requests.
func (s *Server) startClusterLists() error {
	for op, h := range map[string]func([]byte, func([]byte)){
		"lists": s.serveLists, "adds": s.serveAdds, "gleave": s.serveGroupLeaveAll, "gone": s.serveGone,
	} {
		if err := s.cl.node.Handle(op, h); err != nil {
			return err
		}
	}
	return nil
}

// listsRemote sends a list frame of user (homed elsewhere) to the home
// and writes the home's answer to c.
func (s *Server) listsRemote(c *Conn, user uint64, req uint32, t codec.Type, body []byte, f codec.Frame) {
	// The copy of the block list changes with the home's OK, before the
	// client hears it: a SEND after the OK finds it.
	var then func([]byte)
	switch f := f.(type) {
	case *codec.Block:
		then = s.mirrorOnOK(c, user, req, f.User, true)
	case *codec.Unblock:
		then = s.mirrorOnOK(c, user, req, f.User, false)
	}
	s.frameHome(c, "lists", user, user, req, t, body, then)
}

// mirrorOnOK records other's block (on) or unblock in c's copy of its
// list when the home's answer is OK.
func (s *Server) mirrorOnOK(c *Conn, user uint64, req uint32, other uint64, on bool) func([]byte) {
	ok := (&codec.OK{Req: req}).Append(nil)
	return func(reply []byte) {
		if string(reply) == string(ok) {
			s.mirrorBlock(c, user, other, on)
		}
	}
}

// serveLists runs another node's list frame here, at the user's home.
func (s *Server) serveLists(msg []byte, respond func([]byte)) {
	if len(msg) < 9 {
		respond(codec.AppendError(nil, codec.CodeMalformed, 0, nil, "short list request"))
		return
	}
	user, t := binary.BigEndian.Uint64(msg), codec.Type(msg[8])
	switch t {
	case codec.TypeBlock, codec.TypeUnblock, codec.TypeContact, codec.TypeListGet, codec.TypeGroupAdds:
	default:
		respond(codec.AppendError(nil, codec.CodeMalformed, 0, nil, "not a list request"))
		return
	}
	f := codec.New(t)
	if f.Decode(msg[9:]) != nil {
		respond(codec.AppendError(nil, codec.CodeMalformed, 0, nil, "bad list request from another node"))
		return
	}
	req, job := s.listRequest(user, f)
	if !s.local(user) {
		respond(codec.AppendError(nil, codec.CodeUnavailable, req, nil, "the user's home moved; retry"))
		return
	}
	if !s.commits.submit(user, func() { respond(job()) }) {
		s.counters.busy.Add(1)
		respond(codec.AppendError(nil, codec.CodeBusy, req, nil, "too many requests queued; retry"))
	}
}

// addsAllowedAt asks home whether users (homed there) take group adds
// from actor. It runs on a commit lane, like usersExistAt.
func (s *Server) addsAllowedAt(home string, actor uint64, users []uint64) error {
	req := binary.BigEndian.AppendUint64(make([]byte, 0, 8+8*len(users)), actor)
	for _, u := range users {
		req = binary.BigEndian.AppendUint64(req, u)
	}
	ctx, cancel := context.WithTimeout(s.ctx(), 5*time.Second)
	reply, err := s.cl.node.Request(ctx, home, "adds", req)
	cancel()
	switch {
	case err != nil:
		return fmt.Errorf("%w: %s did not answer: %w", errUnavailable, home, err)
	case len(reply) == 1 && reply[0] == 0:
		return nil
	case len(reply) == 9 && reply[0] == 1:
		return fmt.Errorf("%w: user %d does not accept group adds from you", errAddRefused, binary.BigEndian.Uint64(reply[1:]))
	}
	return fmt.Errorf("%w: %s is not the home of every user named (a shard moved); retry", errUnavailable, home)
}

// serveAdds answers addsAllowedAt: | 0 | all take adds, | 1 | user | the
// first that does not, | 2 | one is not homed here.
func (s *Server) serveAdds(req []byte, respond func([]byte)) {
	if len(req) < 8 || len(req)%8 != 0 {
		respond([]byte{2})
		return
	}
	actor := binary.BigEndian.Uint64(req)
	for rest := req[8:]; len(rest) > 0; rest = rest[8:] {
		u := binary.BigEndian.Uint64(rest)
		switch {
		case !s.local(u):
			respond([]byte{2})
			return
		case !s.blocks.AcceptsAdd(u, actor):
			respond(binary.BigEndian.AppendUint64([]byte{1}, u))
			return
		}
	}
	respond([]byte{0})
}

// adoptLists takes into the block store the lists among keys, records a
// shard move just wrote here (move.go).
func (s *Server) adoptLists(keys [][]byte) error {
	var owners []uint64
	seen := map[uint64]bool{}
	for _, k := range keys {
		if o, ok := block.Owner(k); ok && !seen[o] {
			seen[o] = true
			owners = append(owners, o)
		}
	}
	if len(owners) == 0 {
		return nil
	}
	return s.blocks.Adopt(owners)
}
