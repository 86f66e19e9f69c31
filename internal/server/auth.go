package server

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/account"
	"github.com/chatd/chatd/internal/cluster"
	"github.com/chatd/chatd/internal/conn"
	"go.uber.org/zap"
)

// authenticate handles REGISTER, LOGIN and RESUME. Password hashing takes
// tens of milliseconds, so REGISTER and LOGIN run on their own goroutine
// (the account store bounds how many hash at once) and the event loop
// moves on. RESUME does too: it rotates the token, a synced write (and in
// a cluster the account's home may be another node).
func (s *Server) authenticate(c *Conn, t codec.Type, body []byte) error {
	st := &c.State
	if !st.auth.CompareAndSwap(authNone, authPending) {
		s.errorTo(c, codec.CodeAuthPending, 0, nil, "authentication already in progress")
		return nil
	}
	start := mono() // for chatd_login_seconds
	switch t {
	case codec.TypeResume:
		var f codec.Resume
		if err := f.Decode(body); err != nil {
			return s.malformed(c, err)
		}
		tok, addr := f.Token, c.RemoteAddr()
		conn.Go(func() { // a synced write; the home may be another node, and the directory claim is a round trip
			r, err := s.account(cluster.ShardOf(account.TokenUser(tok)), acctRequest{Op: "resume", Token: tok, Addr: addr})
			if err == nil {
				err = accountErr(r)
			}
			if err == nil && r.Token == (codec.Token{}) {
				r.Token = tok // a home of a chatd before sessions (a cluster mid-upgrade) keeps tokens as they are
			}
			if err == nil {
				s.counters.resumes.Add(1)
			}
			s.authenticated(c, kindResume, start, r, err)
			c.Flush()
		})
		return nil
	case codec.TypeRegister:
		var f codec.Register
		if err := f.Decode(body); err != nil {
			return s.malformed(c, err)
		}
		if !s.logins.allow(sourceOf(c), "") {
			s.refuseLogin(c, kindRegister)
			return nil
		}
		if s.storageFull() {
			s.loginFailed(c, kindRegister, failStorageFull)
			st.auth.Store(authNone)
			s.errorTo(c, codec.CodeStorageFull, 0, nil, "the server's disk is nearly full; retry later")
			return nil
		}
		name, pass, addr := append([]byte(nil), f.Name...), append([]byte(nil), f.Password...), c.RemoteAddr()
		go func() {
			r, err := s.account(account.NameShard(name), acctRequest{Op: "register", Name: name, Password: pass, Addr: addr})
			if err == nil {
				err = accountErr(r)
			}
			if err == nil {
				s.counters.registers.Add(1)
			}
			s.authenticated(c, kindRegister, start, r, err)
			c.Flush()
		}()
	case codec.TypeLogin:
		var f codec.Login
		if err := f.Decode(body); err != nil {
			return s.malformed(c, err)
		}
		if !s.logins.allow(sourceOf(c), string(f.Name)) {
			s.refuseLogin(c, kindLogin)
			return nil
		}
		name, pass, addr := append([]byte(nil), f.Name...), append([]byte(nil), f.Password...), c.RemoteAddr()
		go func() {
			r, err := s.account(account.NameShard(name), acctRequest{Op: "login", Name: name, Password: pass, Addr: addr})
			if err == nil {
				err = accountErr(r)
			}
			if err == nil {
				s.counters.logins.Add(1)
			} else if errors.Is(err, account.ErrWrongPassword) || errors.Is(err, account.ErrUnknownUser) {
				s.logins.failed(string(name))
			}
			s.authenticated(c, kindLogin, start, r, err)
			c.Flush()
		}()
	}
	return nil
}

// refuseLogin answers a rate-limited attempt; the connection may retry
// after the window.
func (s *Server) refuseLogin(c *Conn, kind loginKind) {
	s.loginFailed(c, kind, failRateLimited)
	c.State.auth.Store(authNone)
	s.counters.loginLimited.Add(1)
	s.errorTo(c, codec.CodeTooManyLogins, 0, nil, "too many login attempts; retry in a minute")
}

// loginFailed counts a failed authentication and logs it, rate-limited,
// with the client's address.
func (s *Server) loginFailed(c *Conn, kind loginKind, why failReason) {
	s.fails.note(s.log, time.Now(), kind, why, c.RemoteAddr())
}

// authenticated finishes a login of the given kind that started at the
// mono reading start: it makes c the user's one live session (kicking an
// older one), sends WELCOME with the session's token and starts draining
// the inbox.
func (s *Server) authenticated(c *Conn, kind loginKind, start int64, r acctReply, err error) {
	st := &c.State
	user, tok := r.User, r.Token
	if err != nil {
		s.log.Debug("authentication failed", zap.Stringer("kind", kind), zap.Uint64("conn", connID(c)), zap.Error(err))
		s.loginFailed(c, kind, failReasonOf(err))
		st.auth.Store(authNone)
		s.errorTo(c, s.accountCode(err), 0, nil, accountDetail(err))
		return
	}
	if err := s.claimSession(c, user); err != nil { // a login on another node won a race for this user
		s.log.Debug("session claim lost", zap.Stringer("kind", kind), zap.Uint64("user", user), zap.Uint64("conn", connID(c)))
		s.loginFailed(c, kind, failClaimLost)
		st.auth.Store(authNone)
		s.kick(c, codec.KickElsewhere)
		return
	}
	if s.cl != nil && !s.local(user) {
		s.mirrorLists(c, user, r.Blocked) // before the session's first frame
	}
	st.user.Store(user)
	st.route.Lock()
	st.sid = r.Session
	st.route.Unlock()
	st.seen.Store(c.LastRead())                               // the login recorded it
	if old, ok := s.sessions.Login(user, c); ok && old != c { // behind whatever waits in the inbox
		s.kick(old, codec.KickElsewhere)
	}
	if st.gone.Load() {
		// Closed ran before the swap and could not remove us.
		s.log.Debug("session closed during its login", zap.Uint64("user", user), zap.Uint64("conn", connID(c)))
		if s.sessions.Remove(user, c) {
			// Closed found no session to end: end this one's claim and
			// list copy here, or they outlive it (on a cluster).
			s.endSession(c, user)
		}
		return
	}
	if ce := s.log.Check(zap.DebugLevel, "session started"); ce != nil { // a login's: fields built only when kept
		ce.Write(zap.Stringer("kind", kind), zap.Uint64("user", user), zap.Uint64("conn", connID(c)),
			zap.Bool("home_here", s.local(user)))
	}
	s.presence.Changed(user, 0)
	// Authenticated before the WELCOME is queued: anything else that
	// flushes this connection (a push, a receipt, a presence change) may
	// send the WELCOME on, and the client's first frames after it (the
	// SENDs it resends at once) must find the session open, not be
	// refused as "before WELCOME" with no message id to resend.
	st.auth.Store(authDone)
	s.reply(c, s.welcome(user, tok))
	// Marked after the WELCOME is queued: a key rotation announces itself
	// to authenticated connections (useKeys), and its KEY_ROTATE must not
	// come before the WELCOME. One that raced this login is announced
	// here, or by useKeys, or both (a repeat is harmless).
	c.Authenticated()
	s.announceKey(c)
	// Sent now, not when the login's work is done: in a cluster the
	// attach and the drain's first read are round trips to the home,
	// seconds each under load, and a client that waited that long for its
	// WELCOME gave up (its attempt's deadline) and logged in again, adding
	// load (seen in a loaded kill -9 run).
	c.Flush()
	if s.cfg.welcomed != nil {
		s.cfg.welcomed(c)
	}
	s.lat.login[kind].Observe(time.Duration(mono() - start))
	if s.rm != nil && !s.local(user) {
		s.attach(c, user) // the home pushes to this node from now on; the drain reads what it holds
	}
	s.drain(c)
	s.keysAtLogin(c, user)
}

// welcome encodes the WELCOME that opens a session.
func (s *Server) welcome(user uint64, tok codec.Token) []byte {
	return (&codec.Welcome{
		User: user, Token: tok, Keepalive: uint16(s.cfg.Keepalive / time.Second), Window: uint16(s.cfg.Window),
		MaxBody: uint32(s.cfg.MaxBody), Time: uint64(time.Now().UnixMilli()),
	}).Append(nil)
}

// kick ends a session with a KICKED frame.
func (s *Server) kick(c *Conn, reason codec.KickReason) {
	if buf, ok := c.Begin(); ok {
		c.End((&codec.Kicked{Reason: reason}).Append(buf))
	}
	c.Close()
}

// logout ends the account session (every token of it) on a commit lane
// (written with Sync) and then ends the connection with KICKED reason 2:
// the client knows its token is dead once KICKED arrives. If the session
// could not be ended, ERROR 60 answers instead and the connection stays.
// A session already ended (revoked from another device) is no error.
func (s *Server) logout(c *Conn, body []byte) error {
	var f codec.Logout
	if err := f.Decode(body); err != nil {
		return s.malformed(c, err)
	}
	user, sid := c.State.user.Load(), s.sessionOf(c)
	job := func() {
		r, err := s.account(cluster.ShardOf(user), acctRequest{Op: "end_session", User: user, Session: sid})
		if err == nil {
			err = accountErr(r)
		}
		if errors.Is(err, account.ErrUnknownSession) {
			err = nil
		}
		if err != nil {
			s.log.Error("logout: revoke token", zap.Error(err))
			s.errorTo(c, codec.CodeInternal, 0, nil, "token not revoked; retry LOGOUT")
			c.Flush()
			return
		}
		s.dropPushSubscriptions(user)
		s.kick(c, codec.KickLoggedOut)
	}
	if !s.commits.submit(user, job) {
		s.counters.busy.Add(1)
		s.errorTo(c, codec.CodeBusy, 0, nil, "too many requests queued; retry LOGOUT")
	}
	return nil
}

func (s *Server) password(c *Conn, body []byte) error {
	var f codec.Password
	if err := f.Decode(body); err != nil {
		return s.malformed(c, err)
	}
	user := c.State.user.Load()
	if !s.logins.allow(sourceOf(c), strconv.FormatUint(user, 10)) {
		s.loginFailed(c, kindPassword, failRateLimited)
		s.errorTo(c, codec.CodeTooManyLogins, 0, nil, "too many attempts; retry in a minute")
		return nil
	}
	old, pass, addr := append([]byte(nil), f.Old...), append([]byte(nil), f.New...), c.RemoteAddr()
	start := mono()
	go func() {
		r, err := s.account(cluster.ShardOf(user), acctRequest{Op: "password", User: user, Old: old, Password: pass, Addr: addr})
		if err == nil {
			err = accountErr(r)
		}
		tok := r.Token
		if errors.Is(err, account.ErrWrongPassword) {
			s.logins.failed(strconv.FormatUint(user, 10))
		}
		if err != nil {
			s.loginFailed(c, kindPassword, failReasonOf(err))
			s.errorTo(c, s.accountCode(err), 0, nil, accountDetail(err))
		} else {
			s.dropPushSubscriptions(user)
			c.State.route.Lock()
			c.State.sid = r.Session
			c.State.route.Unlock()
			s.lat.login[kindPassword].Observe(time.Duration(mono() - start))
			s.reply(c, s.welcome(user, tok))
		}
		c.Flush()
	}()
	return nil
}

// accountDetail is the ERROR text for an account error that a person can
// act on: which naming or password rule failed, or that hashing is busy.
// Unknown user and wrong password stay bare, to tell a guesser nothing.
func accountDetail(err error) string {
	switch {
	case errors.Is(err, account.ErrInvalidName), errors.Is(err, account.ErrInvalidPassword):
		return strings.TrimPrefix(err.Error(), "account: ")
	case errors.Is(err, account.ErrBusy):
		return "password hashing is saturated; retry in a moment"
	case errors.Is(err, errUnavailable):
		return "the account's home node did not answer; retry in a moment"
	case errors.Is(err, account.ErrTokenExpired):
		return "the session expired unused; log in with the password"
	}
	return ""
}

// accountCode maps account errors to protocol codes.
func (s *Server) accountCode(err error) codec.Code {
	switch {
	case errors.Is(err, account.ErrUnknownUser):
		return codec.CodeUnknownUser
	case errors.Is(err, account.ErrWrongPassword):
		return codec.CodeWrongPassword
	case errors.Is(err, account.ErrNameTaken):
		return codec.CodeNameTaken
	case errors.Is(err, account.ErrInvalidName):
		return codec.CodeInvalidName
	case errors.Is(err, account.ErrInvalidPassword):
		return codec.CodeInvalidPassword
	case errors.Is(err, account.ErrInvalidToken):
		return codec.CodeInvalidToken
	case errors.Is(err, account.ErrBusy):
		s.counters.busy.Add(1)
		return codec.CodeBusy
	case errors.Is(err, errUnavailable):
		return codec.CodeUnavailable
	}
	s.log.Error("account operation failed", zap.Error(err))
	return codec.CodeInternal
}
