package server

import (
	"errors"
	"fmt"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/account"
	"github.com/chatd/chatd/internal/cluster"
	"go.uber.org/zap"
)

// errClose makes conn close the connection after what is queued.
var errClose = errors.New("server: closing connection")

// Inline and InlineAll implement conn.InlineHandler. On one node no
// frame handler waits: what must be durable before its answer runs on a
// commit lane (commits.go) or a goroutine of its own, SEND and READ queue
// to an inbox lane, and the rest answers from memory or a point read of
// the store. So every turn of whole frames may run on the poller, except
// a login's (REGISTER, LOGIN, RESUME: it hands its synced writes off
// itself, but a storm of them would hold the poller for their reads and
// password hashes). On a cluster none: a SEND may wait for the shard map,
// and those paths are not audited for the poller.
func (s *Server) Inline(t codec.Type) bool {
	if s.cl != nil {
		return false
	}
	switch t {
	case codec.TypeRegister, codec.TypeLogin, codec.TypeResume:
		return false
	}
	return true
}

// InlineAll: see Inline. After authentication a login frame is refused at
// once, so on one node every type qualifies.
func (s *Server) InlineAll() bool { return s.cl == nil }

// Frame implements conn.Handler: it runs on the connection's event-loop
// turn, one frame at a time.
func (s *Server) Frame(c *Conn, t codec.Type, body []byte) error {
	// conn refuses server-only and unknown types before they get here.
	st := &c.State
	if st.auth.Load() != authDone {
		switch t {
		case codec.TypeRegister, codec.TypeLogin, codec.TypeResume:
			return s.authenticate(c, t, body)
		case codec.TypePing:
			return s.ping(c, body)
		}
		code := codec.CodeNotAuthenticated
		if st.auth.Load() == authPending {
			code = codec.CodeAuthPending
		}
		s.errorTo(c, code, 0, nil, t.String()+" before WELCOME")
		return nil
	}
	s.touchSession(c)
	switch t {
	case codec.TypeSend:
		return s.send(c, body)
	case codec.TypeAck:
		return s.ack(c, body)
	case codec.TypeRead:
		return s.read(c, body)
	case codec.TypePing:
		return s.ping(c, body)
	case codec.TypeOptions:
		return s.options(c, body)
	case codec.TypeTyping:
		return s.typing(c, body)
	case codec.TypeLookup:
		return s.lookup(c, body)
	case codec.TypeLogout:
		return s.logout(c, body)
	case codec.TypePassword:
		return s.password(c, body)
	case codec.TypeRegister, codec.TypeLogin, codec.TypeResume:
		s.errorTo(c, codec.CodeAlreadyAuth, 0, nil, "session already authenticated")
		return nil
	case codec.TypeGroupCreate, codec.TypeGroupAdd, codec.TypeGroupRemove, codec.TypeGroupLeave,
		codec.TypeGroupRename, codec.TypeGroupAdmin, codec.TypeGroupGet, codec.TypeGroupList:
		return s.groupFrame(c, t, body)
	case codec.TypeSubscribe, codec.TypeUnsubscribe, codec.TypePrivacy:
		return s.presenceFrame(c, t, body)
	case codec.TypeBlock, codec.TypeUnblock, codec.TypeListGet, codec.TypeContact, codec.TypeGroupAdds:
		return s.blockFrame(c, t, body)
	case codec.TypeAccountDelete:
		return s.accountDelete(c, body)
	case codec.TypeKeysUpload, codec.TypeKeysCount, codec.TypeKeysFetch, codec.TypeKeysCheck:
		return s.keysFrame(c, t, body)
	case codec.TypePushSubscribe, codec.TypePushList, codec.TypePushRemove:
		return s.pushFrame(c, t, body)
	case codec.TypeSessions, codec.TypeSessionRevoke, codec.TypeSessionLabel:
		return s.sessionFrame(c, t, body)
	}
	return s.fatal(c, codec.CodeUnknownType, "unexpected frame "+t.String())
}

// Closed implements conn.Handler. It may run on the poller: no blocking.
func (s *Server) Closed(c *Conn) {
	st := &c.State
	st.gone.Store(true)
	if u := st.user.Load(); u != 0 && s.sessions.Remove(u, c) {
		if ce := s.log.Check(zap.DebugLevel, "session ended"); ce != nil {
			ce.Write(zap.Uint64("user", u), zap.Uint64("conn", connID(c)))
		}
		s.presence.Changed(u, uint64(time.Now().UnixMilli()))
		s.endSession(c, u)
		s.sessionSeen(c, u)
		if s.rm != nil {
			s.detach(c, u)
		}
	}
	s.sessions.Closed(c)
	if st.held.Load() != 0 {
		s.holds.forget(c)
	}
	st.route.Lock()
	subs := st.subs
	st.subs = nil
	st.route.Unlock()
	if len(subs) > 0 {
		s.presence.Forget(c, subs)
	}
}

// fatal answers a protocol violation with ERROR and closes the connection.
func (s *Server) fatal(c *Conn, code codec.Code, detail string) error {
	s.errorTo(c, code, 0, nil, detail)
	return errClose
}

// errorTo queues an ERROR on c, encoded straight into its queue. req names
// the failed request and id the failed SEND (nil when neither applies).
func (s *Server) errorTo(c *Conn, code codec.Code, req uint32, id *codec.MsgID, detail string) {
	if ce := s.log.Check(zap.DebugLevel, "error to client"); ce != nil {
		ce.Write(zap.Uint64("user", c.State.user.Load()), zap.Uint64("conn", connID(c)), zap.Stringer("code", code), zap.String("detail", detail))
	}
	if buf, ok := c.Begin(); ok {
		c.End(codec.AppendError(buf, code, req, id, detail))
	}
}

// malformed answers a frame that did not decode and closes; returning the
// codec's error (which wraps codec.ErrMalformed) lets conn count and log
// it as bad input.
func (s *Server) malformed(c *Conn, err error) error {
	s.errorTo(c, codec.CodeMalformed, 0, nil, err.Error())
	return err
}

// reply queues one frame on c; OnRequest flushes it when the turn ends.
func (s *Server) reply(c *Conn, frame []byte) {
	c.Write(frame)
}

func (s *Server) ping(c *Conn, body []byte) error {
	var f codec.Ping
	if err := f.Decode(body); err != nil {
		return s.malformed(c, err)
	}
	if buf, ok := c.Begin(); ok {
		c.End((&codec.Pong{Nonce: f.Nonce}).Append(buf))
	}
	return nil
}

func (s *Server) send(c *Conn, body []byte) error {
	var f codec.Send
	if err := f.Decode(body); err != nil {
		return s.malformed(c, err)
	}
	user := c.State.user.Load()
	var code codec.Code
	var detail string
	switch {
	case !f.Flags.Valid():
		code, detail = codec.CodeInvalidFlags, "SEND with reserved flag bits set"
	case len(f.Body) > s.cfg.MaxBody:
		code, detail = codec.CodeBodyTooLarge, fmt.Sprintf("body of %d bytes; this server takes at most %d", len(f.Body), s.cfg.MaxBody)
	case s.heldBack(c, &f): // after the checks that refuse for good, before any that stores
		return nil
	case s.storageFull(): // before the group branch: group SENDs too
		if !s.refuseForNow(c, &f, codec.CodeStorageFull, "the server's disk is nearly full; retry later") {
			return errClose
		}
		return nil
	case f.Flags&codec.FlagGroup != 0:
		s.sendGroup(c, &f, user)
		return nil
	case f.To == user:
		code, detail = codec.CodeSelfSend, "SEND to yourself"
	case s.cl != nil && s.ownBlock(c, f.To): // before the store goes to the recipient's home
		code, detail = codec.CodeYouBlocked, fmt.Sprintf("you blocked user %d: unblock them first", f.To)
	case s.cl != nil && (!s.local(f.To) || s.rm.inFlight(c, f.To)):
		home, err := s.homeOf(cluster.ShardOf(f.To))
		if err != nil {
			// Refused for now, and a later SEND may find the home (a shard
			// move ending) and overtake it: the client resends both, in order.
			return s.fatal(c, codec.CodeUnavailable, err.Error())
		}
		if !s.sendAway(c, &f, user, home) { // the home checks the recipient
			return errClose
		}
		return nil
	case !s.accounts.Exists(f.To):
		code, detail = codec.CodeUnknownRecipient, fmt.Sprintf("no user %d", f.To)
	case s.cl == nil && s.blocks.Blocks(user, f.To):
		code, detail = codec.CodeYouBlocked, fmt.Sprintf("you blocked user %d: unblock them first", f.To)
	case s.blocks.Blocks(f.To, user): // homed here: a remote recipient returned above
		s.blockedSend(c, f.ID) // the block is not revealed
		return nil
	}
	if code != 0 {
		s.errorTo(c, code, 0, &f.ID, detail)
		return nil
	}
	m := s.inbox.NewMessage()
	m.To, m.From, m.ID, m.Dup, m.Sender, m.Stamp = f.To, user, f.ID, f.Flags&codec.FlagDup != 0, c, mono()
	m.FoldReceipt = c.State.sentDelivered
	m.Body = append(m.Body[:0], f.Body...)
	if s.cl == nil && s.deliverLive(m) {
		return nil
	}
	if err := s.inbox.Submit(m); err != nil {
		s.counters.busy.Add(1)
		if !s.refuseForNow(c, &f, codec.CodeBusy, "message store saturated; not stored, retry") {
			return errClose
		}
	}
	return nil
}

// read handles READ. A read receipt is produced only for messages the
// reader was delivered and acknowledged, each once (offline's read log);
// f.To names the messages' sender and f.Group their group (0 for 1:1),
// two fields, so a group id is never taken for a user id.
func (s *Server) read(c *Conn, body []byte) error {
	var f codec.Read
	if err := f.Decode(body); err != nil {
		return s.malformed(c, err)
	}
	user := c.State.user.Load()
	if s.accounts.Deleted(f.To) {
		return nil // a deleted account takes no receipts (no one would read them)
	}
	switch {
	case f.To == user:
		s.errorTo(c, codec.CodeSelfSend, 0, nil, "READ names yourself as the sender")
		return nil
	case s.local(f.To) && !s.accounts.Exists(f.To): // another node's user: the read log at the reader's home checks the ids
		s.errorTo(c, codec.CodeUnknownRecipient, 0, nil, "READ names no existing sender (to is the sender's user id; a group goes in group)")
		return nil
	case f.Group != 0 && (s.cl == nil || s.local(f.Group)): // a group homed elsewhere: the read log checks the ids were delivered in it
		g, err := s.groups.Get(f.Group)
		if err != nil {
			code, detail := s.groupCode(err)
			s.errorTo(c, code, 0, nil, "READ: "+detail)
			return nil
		}
		g.Mu.RLock()
		_, member := g.Role(user)
		g.Mu.RUnlock()
		if !member {
			s.errorTo(c, codec.CodeNotMember, 0, nil, "READ for a group you are not in")
			return nil
		}
	}
	if s.ownBlock(c, f.To) {
		return nil // no read receipt goes to a user one blocked
	}
	asked := f.IDs.Len()
	mark := s.inbox.MarkRead
	if !s.local(user) {
		mark = s.markHome // the read log is at the reader's home
	}
	err := mark(user, f.To, f.Group, append(codec.IDList(nil), f.IDs...), func(missing codec.IDList, err error) {
		switch {
		case err != nil:
			s.errorTo(c, codec.CodeInternal, 0, nil, "READ not recorded; retry")
		case missing.Len() > 0:
			id := missing.At(0)
			s.errorTo(c, codec.CodeNotDelivered, 0, &id, fmt.Sprintf(
				"%d of %d ids were not delivered to you and acknowledged, or were already reported read", missing.Len(), asked))
		default:
			return
		}
		c.Flush()
	})
	if err != nil {
		s.counters.busy.Add(1)
		s.errorTo(c, codec.CodeBusy, 0, nil, "store saturated; retry")
	}
	return nil
}

func (s *Server) typing(c *Conn, body []byte) error {
	var f codec.Typing
	if err := f.Decode(body); err != nil {
		return s.malformed(c, err)
	}
	if f.Flags&^codec.FlagGroup != 0 || f.State > codec.TypingStarted {
		s.errorTo(c, codec.CodeInvalidFlags, 0, nil, "bad TYPING flags or state")
		return nil
	}
	user := c.State.user.Load()
	if f.Flags&codec.FlagGroup != 0 {
		s.typingGroup(c, user, &f)
		return nil
	}
	remote := s.cl != nil && !s.local(f.To)
	if f.To == user || !remote && !s.accounts.Exists(f.To) { // a remote one's home checks
		s.errorTo(c, codec.CodeUnknownRecipient, 0, nil, "TYPING names no other user")
		return nil
	}
	if !remote && s.blocks.Blocks(f.To, user) || s.ownBlock(c, f.To) { // a recipient homed elsewhere checks at its home
		return nil // dropped either way, and the blocked side is not told
	}
	// Typing is ephemeral: only an online recipient hears it.
	if !s.typingTo(user, f.To, f.State) && s.cl != nil {
		s.typingAway(user, f.To, f.State)
	}
	return nil
}

// typingTo writes IS_TYPING to to's session if it is on this node.
func (s *Server) typingTo(from, to uint64, state codec.TypingState) bool {
	c, ok := s.sessions.Lookup(to)
	if ok {
		if c.Write((&codec.IsTyping{From: from, State: state}).Append(nil)) {
			c.Flush()
		}
	}
	return ok
}

func (s *Server) lookup(c *Conn, body []byte) error {
	var f codec.Lookup
	if err := f.Decode(body); err != nil {
		return s.malformed(c, err)
	}
	var req acctRequest
	var shard int
	switch {
	case f.User != 0 && len(f.Name) == 0:
		req, shard = acctRequest{Op: "name", User: f.User}, cluster.ShardOf(f.User)
	case f.User == 0 && len(f.Name) > 0:
		req, shard = acctRequest{Op: "lookup", Name: append([]byte(nil), f.Name...)}, account.NameShard(f.Name)
	default:
		s.errorTo(c, codec.CodeMalformed, f.Req, nil, "LOOKUP needs exactly one of user and name")
		return nil
	}
	answer := func() {
		r, err := s.account(shard, req)
		if err == nil {
			err = accountErr(r)
		}
		if err != nil {
			s.errorTo(c, s.accountCode(err), f.Req, nil, accountDetail(err))
			return
		}
		if req.Op == "name" {
			r.User = req.User
		} else {
			r.Name = req.Name
		}
		s.reply(c, (&codec.User{Req: f.Req, User: r.User, Name: r.Name}).Append(nil))
	}
	if s.cl == nil || s.local(req.User) && req.Op == "name" {
		answer() // a point read of this node's store: inline
		return nil
	}
	go func() { answer(); c.Flush() }() // maybe another node's: off the event loop
	return nil
}
