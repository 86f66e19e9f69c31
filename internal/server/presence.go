package server

import (
	"fmt"

	"github.com/chatd/chatd/codec"
	"go.uber.org/zap"
)

// maxSubscriptions bounds one connection's subscriptions.
const maxSubscriptions = 4096

// presenceFrame handles SUBSCRIBE, UNSUBSCRIBE and PRIVACY; package
// presence does the watching. A connection's list of the users it watches
// lives in its session (st.subs, guarded by route), so that Closed can
// Forget them without presence keeping a map per connection. Lock order:
// route, then presence's mu, then the connection's queue.
func (s *Server) presenceFrame(c *Conn, t codec.Type, body []byte) error {
	st := &c.State
	switch t {
	case codec.TypeSubscribe:
		var f codec.Subscribe
		if err := f.Decode(body); err != nil {
			return s.malformed(c, err)
		}
		var users []uint64
		for i := 0; i < f.Users.Len(); i++ {
			// Ids that are no account are ignored: no PRESENCE, no slot. A
			// user homed on another node is checked there (its home
			// answers nothing for an id that is no account).
			if u := f.Users.At(i); s.accounts.Exists(u) || s.cl != nil && !s.local(u) {
				users = append(users, u)
			}
		}
		st.route.Lock()
		if len(st.subs)+len(users) > maxSubscriptions {
			st.route.Unlock()
			s.errorTo(c, codec.CodeTooManyTargets, 0, nil,
				fmt.Sprintf("one connection may watch at most %d users", maxSubscriptions))
			return nil
		}
		st.subs = append(st.subs, s.presence.Subscribe(c, users)...)
		st.route.Unlock()
	case codec.TypeUnsubscribe:
		var f codec.Unsubscribe
		if err := f.Decode(body); err != nil {
			return s.malformed(c, err)
		}
		drop := ids(f.Users)
		s.presence.Forget(c, drop)
		st.route.Lock()
		kept := st.subs[:0]
		for _, u := range st.subs {
			found := false
			for _, d := range drop {
				found = found || d == u
			}
			if !found {
				kept = append(kept, u)
			}
		}
		st.subs = kept
		st.route.Unlock()
	case codec.TypePrivacy:
		var f codec.Privacy
		if err := f.Decode(body); err != nil {
			return s.malformed(c, err)
		}
		if !f.Flags.Valid() {
			s.errorTo(c, codec.CodeInvalidFlags, 0, nil, "PRIVACY: unused flag bits set")
			return nil
		}
		user := st.user.Load()
		if s.cl != nil && !s.local(user) {
			err := s.privacyHome(user, f.Flags, func(err error) {
				if err != nil {
					s.errorTo(c, codec.CodeUnavailable, 0, nil, "privacy setting not stored: your home node did not answer; retry")
					c.Flush()
				}
			})
			if err != nil {
				s.errorTo(c, codec.CodeUnavailable, 0, nil, "privacy setting not stored: "+err.Error())
			}
			return nil
		}
		job := func() {
			if err := s.presence.SetPrivacy(user, f.Flags); err != nil {
				s.log.Error("privacy not stored", zap.Error(err))
				s.errorTo(c, codec.CodeInternal, 0, nil, "privacy setting not stored; retry")
				c.Flush()
			}
		}
		if !s.commits.submit(user, job) {
			s.counters.busy.Add(1)
			s.errorTo(c, codec.CodeBusy, 0, nil, "too many requests queued; retry PRIVACY")
		}
	}
	return nil
}
