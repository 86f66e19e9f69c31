package server

import (
	"encoding/binary"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/cluster"
	"github.com/chatd/chatd/internal/presence"
)

// Presence across nodes (package presence, remote.go). A user's home
// decides its presence: online while it has a session here or attached
// from a live node (the attachment names the node's run, so a session of
// a node that restarted is gone), else offline with the last seen the
// home stored at the detach (or when the session's node died). Three
// flows:
//
//   - "watch": a node whose clients watch a user homed elsewhere asks
//     the home for updates while any does (sent in order with the
//     node's other requests to that home).
//   - "presence2": the home's coalesced updates to each watching node,
//     each with the users it hides from (its block list), whom the node
//     shows it as hidden as the home would. ("presence", without them,
//     is no longer sent.)
//   - "privacy": PRIVACY of a user homed elsewhere, stored at the home.

// online is presence's Online: user has a session here, or (a cluster,
// at its home) one attached from a live node that has not restarted.
func (s *Server) online(user uint64) bool {
	if _, on := s.sessions.Lookup(user); on {
		return true
	}
	if s.rm == nil {
		return false
	}
	s.rm.mu.Lock()
	a := s.rm.away[user]
	s.rm.mu.Unlock()
	return a != nil && s.cl.node.Alive(a.node) && !s.cl.node.Started(a.node).After(a.started)
}

// watchHome is presence's Watch: it asks user's home for updates, or
// stops. It must not block (presence's lock is held): the request is
// queued in order with this node's others to that home.
func (s *Server) watchHome(user uint64, on bool) {
	home, err := s.homeOf(cluster.ShardOf(user))
	if err != nil {
		return
	}
	s.cl.node.Send(home, "watch", watchMsg(user, on, s.cl.node.Run().UnixMilli(), s.cl.node.Name()), func(reply []byte, err error) {
		if on && err == nil && len(reply) == 1 && reply[0] == watchNoUser {
			s.presence.NoSuchUser(user)
		}
	})
}

// A watch's answer: taken; no such account at its home (its watchers
// hear nothing); or the node is not the user's home (the shard moved:
// asked again, as for a lost watch, by watchUnheard).
const (
	watchTaken  = 0
	watchNoUser = 1
	watchNoHome = 2
)

// watchUnheard asks again the homes of the users watched here that have
// sent nothing yet: a watch, or the home's first update, crosses nodes at
// most once and may have been lost. A home that has the watch already
// sends the state again. Homes not live are not asked (rewatch asks them
// when they come back), and one pass asks at most maxRewatch, so that a
// home that answers nothing cannot fill this node's requests in flight.
func (s *Server) watchUnheard() {
	n := 0
	for _, u := range s.presence.Unheard() {
		home, err := s.homeOf(cluster.ShardOf(u))
		if err != nil || !s.cl.node.Alive(home) {
			continue
		}
		if n++; n > maxRewatch {
			return
		}
		s.watchHome(u, true)
	}
}

// maxRewatch bounds the watches one watchUnheard pass sends.
const maxRewatch = 1024

// watchMsg is | user (8) | on (1) | run (8) | node name |.
func watchMsg(user uint64, on bool, run int64, node string) []byte {
	b := binary.BigEndian.AppendUint64(nil, user)
	if on {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = binary.BigEndian.AppendUint64(b, uint64(run))
	return append(b, node...)
}

func (s *Server) serveWatch(req []byte, respond func([]byte)) {
	if len(req) < 18 {
		respond([]byte{watchNoUser})
		return
	}
	user, on, run, node := binary.BigEndian.Uint64(req), req[8] == 1, int64(binary.BigEndian.Uint64(req[9:])), string(req[17:])
	switch {
	case on && !s.local(user):
		respond([]byte{watchNoHome})
		return
	case on && !s.accounts.Exists(user):
		respond([]byte{watchNoUser}) // its watchers hear nothing, as on one node
		return
	}
	s.presence.WatchFrom(node, run, user, on)
	respond([]byte{watchTaken})
}

// relayPresence is presence's Relay: the updates go to a watching node
// as one publish (a lost one is repaired by the next change). Each is
// | user (8) | state (1) | last seen (8) | n (2) | n users it hides from (8 each) |.
func (s *Server) relayPresence(node string, updates []presence.Update) {
	n := 0
	for _, u := range updates {
		n += 19 + 8*len(u.HiddenFrom)
	}
	b := make([]byte, 0, n)
	for _, u := range updates {
		b = binary.BigEndian.AppendUint64(b, u.User)
		b = append(b, byte(u.State))
		b = binary.BigEndian.AppendUint64(b, u.LastSeen)
		b = binary.BigEndian.AppendUint16(b, uint16(len(u.HiddenFrom)))
		for _, h := range u.HiddenFrom {
			b = binary.BigEndian.AppendUint64(b, h)
		}
	}
	s.cl.node.Publish(node, "presence2", b)
}

func (s *Server) servePresence(msg []byte, respond func([]byte)) {
	var updates []presence.Update
	for len(msg) >= 19 {
		u := presence.Update{User: binary.BigEndian.Uint64(msg),
			State: codec.PresenceState(msg[8]), LastSeen: binary.BigEndian.Uint64(msg[9:])}
		n := int(binary.BigEndian.Uint16(msg[17:]))
		msg = msg[19:]
		if len(msg) < 8*n {
			break // cut short: what came whole still counts
		}
		for i := range n {
			u.HiddenFrom = append(u.HiddenFrom, binary.BigEndian.Uint64(msg[8*i:]))
		}
		msg = msg[8*n:]
		updates = append(updates, u)
	}
	s.presence.Heard(updates)
}

// privacyHome stores PRIVACY at the user's home; done gets the outcome.
func (s *Server) privacyHome(user uint64, flags codec.PrivacyFlags, done func(error)) error {
	home, err := s.homeOf(cluster.ShardOf(user))
	if err != nil {
		return err
	}
	req := append(binary.BigEndian.AppendUint64(nil, user), byte(flags))
	return s.cl.node.Send(home, "privacy", req, func(reply []byte, err error) {
		if err == nil && (len(reply) != 1 || reply[0] != 0) {
			err = errUnavailable
		}
		done(err)
	})
}

func (s *Server) servePrivacy(req []byte, respond func([]byte)) {
	if len(req) != 9 || !s.local(binary.BigEndian.Uint64(req)) {
		respond([]byte{1})
		return
	}
	user, flags := binary.BigEndian.Uint64(req), codec.PrivacyFlags(req[8])
	ok := s.commits.submit(user, func() { // it fsyncs
		if s.presence.SetPrivacy(user, flags) != nil {
			respond([]byte{1})
			return
		}
		respond([]byte{0})
	})
	if !ok {
		respond([]byte{1})
	}
}

// awayPresence runs once a second at a home, with the nodes that were
// live at its last run: a session attached from a node that died reads as
// offline from then (its last seen is now), and one from a node that
// restarted is forgotten.
func (s *Server) awayPresence(wasLive map[string]bool) {
	now := uint64(time.Now().UnixMilli())
	live := map[string]bool{}
	for _, n := range s.cl.node.LiveNodes() {
		live[n] = true
	}
	var changed, gone []uint64
	s.rm.mu.Lock()
	for u, a := range s.rm.away {
		// Heartbeats may still tell of the run before the one the session
		// attached from: only a later one means the session is gone.
		switch {
		case live[a.node] && s.cl.node.Started(a.node).After(a.started):
			delete(s.rm.away, u)
			gone = append(gone, u)
		case live[a.node] != wasLive[a.node]:
			changed = append(changed, u)
		}
	}
	s.rm.mu.Unlock()
	clear(wasLive)
	for n := range live {
		wasLive[n] = true
	}
	for _, u := range gone {
		s.presence.Changed(u, now)
	}
	for _, u := range changed {
		if s.online(u) {
			s.presence.Changed(u, 0)
		} else {
			s.presence.Changed(u, now)
		}
	}
}

// rewatch asks a home that restarted (it keeps watches in memory) again
// for the users watched here, with the home runs seen at its last run.
func (s *Server) rewatch(started map[string]time.Time) {
	byHome := map[string][]uint64{}
	for _, u := range s.presence.Watched() {
		if home, err := s.homeOf(cluster.ShardOf(u)); err == nil {
			byHome[home] = append(byHome[home], u)
		}
	}
	for home, users := range byHome {
		now := s.cl.node.Started(home)
		if was, ok := started[home]; !ok || now.IsZero() || now.Equal(was) {
			if !now.IsZero() {
				started[home] = now
			}
			continue
		}
		started[home] = now
		for _, u := range users {
			s.watchHome(u, true)
		}
	}
}
