package server

import (
	"errors"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/account"
	"github.com/chatd/chatd/internal/cluster"
	"go.uber.org/zap"
)

// Sessions: SESSIONS lists the user's account sessions (one per device
// that logged in), SESSION_LABEL names the connection's own, and
// SESSION_REVOKE ends one. They run at the account's home like the other
// account operations (s.account), off the event loop.
//
// A user has one live connection at a time (a login elsewhere kicks the
// older one), so the connection a revoked session may have open is the
// one asking or, in a race with a login, the user's connection on this
// node: both are checked and kicked with KICKED reason 6. In a cluster,
// a connection of the session on another node in that same race is not
// kicked; its token is dead all the same, so it cannot resume.

// sessionOf is the account session c authenticated into.
func (s *Server) sessionOf(c *Conn) uint64 {
	c.State.route.Lock()
	defer c.State.route.Unlock()
	return c.State.sid
}

func (s *Server) sessionFrame(c *Conn, t codec.Type, body []byte) error {
	user, sid := c.State.user.Load(), s.sessionOf(c)
	var run func()
	switch t {
	case codec.TypeSessions:
		var f codec.Sessions
		if err := f.Decode(body); err != nil {
			return s.malformed(c, err)
		}
		run = func() { s.listSessions(c, user, sid, f.Req) }
	case codec.TypeSessionRevoke:
		var f codec.SessionRevoke
		if err := f.Decode(body); err != nil {
			return s.malformed(c, err)
		}
		run = func() { s.revokeSession(c, user, f.Session, f.Req) }
	case codec.TypeSessionLabel:
		var f codec.SessionLabel
		if err := f.Decode(body); err != nil {
			return s.malformed(c, err)
		}
		label := append([]byte(nil), f.Label...)
		run = func() {
			if s.sessionOp(c, f.Req, acctRequest{Op: "label", User: user, Session: sid, Label: label}, nil) {
				s.reply(c, (&codec.OK{Req: f.Req}).Append(nil))
			}
		}
	}
	go func() { run(); c.Flush() }()
	return nil
}

// sessionOp runs a session operation at the account's home; on failure it
// answers ERROR and reports false.
func (s *Server) sessionOp(c *Conn, req uint32, op acctRequest, out *acctReply) bool {
	r, err := s.account(cluster.ShardOf(op.User), op)
	if err == nil {
		err = accountErr(r)
	}
	switch {
	case errors.Is(err, account.ErrUnknownSession):
		s.errorTo(c, codec.CodeUnknownSession, req, nil, "no such session of yours (it may have ended)")
		return false
	case err != nil:
		s.errorTo(c, s.accountCode(err), req, nil, accountDetail(err))
		return false
	}
	if out != nil {
		*out = r
	}
	return true
}

func (s *Server) listSessions(c *Conn, user, sid uint64, req uint32) {
	var r acctReply
	if !s.sessionOp(c, req, acctRequest{Op: "sessions", User: user}, &r) {
		return
	}
	online := uint64(0) // the session of the user's live connection here
	if lc, ok := s.sessions.Lookup(user); ok {
		online = s.sessionOf(lc)
	}
	list := make([]codec.SessionInfo, 0, len(r.Sessions))
	for _, x := range r.Sessions {
		e := codec.SessionInfo{Session: x.ID, Created: uint64(x.Created.UnixMilli()), LastSeen: uint64(x.LastSeen.UnixMilli()),
			Addr: []byte(x.Addr), Label: x.Label}
		if x.ID == sid {
			e.Flags |= codec.SessionCurrent | codec.SessionOnline
		}
		if x.ID == online {
			e.Flags |= codec.SessionOnline
		}
		list = append(list, e)
	}
	// The frame must fit in MaxLen (entries are at most 27+255+64
	// bytes: about 190): a user with more sessions sees the most recent.
	for sizeOf(list) > codec.MaxLen {
		list = list[:len(list)-1]
	}
	s.reply(c, (&codec.SessionList{Req: req, Sessions: list}).Append(nil))
}

// sizeOf is SESSION_LIST's body length.
func sizeOf(list []codec.SessionInfo) int {
	n := 4 + 2
	for _, e := range list {
		n += 27 + len(e.Addr) + len(e.Label)
	}
	return n
}

// revokeSession ends one of user's sessions (synced at its home), answers
// OK and kicks the session's connection if it is here.
func (s *Server) revokeSession(c *Conn, user, target uint64, req uint32) {
	if !s.sessionOp(c, req, acctRequest{Op: "end_session", User: user, Session: target}, nil) {
		return
	}
	s.reply(c, (&codec.OK{Req: req}).Append(nil))
	for _, k := range []*Conn{c, s.liveConn(user)} {
		if k != nil && s.sessionOf(k) == target {
			s.kick(k, codec.KickRevoked)
		}
	}
}

func (s *Server) liveConn(user uint64) *Conn {
	if lc, ok := s.sessions.Lookup(user); ok {
		return lc
	}
	return nil
}

// sessionSeen records, at the account's home, that c's session was in use
// until now (its connection ended, or touchSession): idle expiry counts
// from here. It is best effort, on its own goroutine (the home may be a
// round trip away; here it is an unsynced write), at most maxSeenInFlight
// at once and none once Close began: the rest are dropped (a mass
// disconnect), and such a session's last recorded use stands (its last
// RESUME or touch, at most seenEvery old).
func (s *Server) sessionSeen(c *Conn, user uint64) {
	sid := s.sessionOf(c)
	if sid == 0 {
		return
	}
	s.seenMu.RLock()
	defer s.seenMu.RUnlock()
	if s.seenClosed || s.seenInFlight.Add(1) > maxSeenInFlight {
		if !s.seenClosed {
			s.seenInFlight.Add(-1)
		}
		return
	}
	s.seenWG.Add(1)
	go func() {
		defer s.seenWG.Done()
		defer s.seenInFlight.Add(-1)
		r, err := s.account(cluster.ShardOf(user), acctRequest{Op: "seen", User: user, Session: sid})
		if err == nil {
			err = accountErr(r)
		}
		if err != nil && !errors.Is(err, account.ErrUnknownSession) {
			s.log.Debug("session last seen not recorded", zap.Uint64("user", user), zap.Error(err))
		}
	}()
}

// stopSeen makes sessionSeen drop what comes and waits for what runs.
func (s *Server) stopSeen() {
	s.seenMu.Lock()
	s.seenClosed = true
	s.seenMu.Unlock()
	s.seenWG.Wait()
}

const maxSeenInFlight = 1024

// touchSession keeps the session of a connection in use from expiring
// while it stays connected: at most every seenEvery (an eighth of the idle
// expiry, at most a day) a frame from it records the session's last use.
// Two atomic loads per frame otherwise, and no clock read: the turn's
// reading (LastRead) will do, in milliseconds that wrap at 49 days, which
// the signed difference survives (seenEvery is at most a day).
func (s *Server) touchSession(c *Conn) {
	now, last := c.LastRead(), c.State.seen.Load()
	if int64(int32(now-last)) < s.seenEvery.Milliseconds() || !c.State.seen.CompareAndSwap(last, now) {
		return
	}
	s.sessionSeen(c, c.State.user.Load())
}
