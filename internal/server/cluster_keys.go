package server

import (
	"context"
	"encoding/binary"
	"errors"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/cluster"
	"go.uber.org/zap"
)

// The prekey directory across nodes. A device's keys live at its user's
// home, with the inbox, and every directory request about them runs
// there, on the commit lane and under the store's per-user lock: so a
// one-time key is taken exactly once whichever nodes its fetchers reach,
// and the fetch limit per (requester, target) counts at the target's
// home. All on one subject, "keys", whose first byte says what:
//
//   - frame: a directory frame from a session on another node, run at
//     the home of the user whose keys it is about (the target of a
//     fetch), which answers with the frame for the client; a home that
//     is no longer one (a shard moved) says so and the sender tries the
//     new home, as for accounts.
//   - peers: the members of a user's groups homed at the receiver; the
//     home of a user whose identity key changed asks every node.
//   - notice: identity notices for users homed at the receiver, which
//     stores them and tells their sessions.
//   - pending, drop: a session away from its user's home reads the
//     notices waiting there (and, at login, whether its device is low),
//     writes them, then has the home drop those it wrote.
//   - write, poke (publishes, from a home to the node of a session away
//     from it): a KEYS_LOW to write, or notices waiting to be fetched. A
//     lost one is made up at the session's next login.
const (
	keysOpFrame   = 'f' // user u64 | type u8 | body
	keysOpPeers   = 'g' // user u64
	keysOpNotice  = 'n' // user u64 | device u16 | watcher u64...
	keysOpPending = 'q' // user u64 | low u8
	keysOpDrop    = 'd' // user u64 | (user u64 | device u16)...
	keysOpWrite   = 'w' // user u64 | frame
	keysOpPoke    = 'p' // user u64
)

// A "keys" reply starts with one of these.
const (
	keysOK      = 0
	keysNotHome = 1 // the receiver is not the home: try the new one
	keysFailed  = 2
)

// keysTries bounds the homes a request tries when the shard map moves
// under it.
const keysTries = 3

func (s *Server) startClusterKeys() error {
	return s.cl.node.Handle("keys", s.serveKeys)
}

// keysRemote sends a directory frame to the home of owner's keys and
// writes the home's answer to c. body is copied.
func (s *Server) keysRemote(c *Conn, req uint32, owner, user uint64, t codec.Type, body []byte) {
	msg := binary.BigEndian.AppendUint64(append(make([]byte, 0, 10+len(body)), keysOpFrame), user)
	msg = append(append(msg, byte(t)), body...)
	s.homeSend(c, "keys", s.serveKeys, req, owner, msg, 0)
}

// homeSend sends msg, a frame for owner's home, as an op request and
// writes the home's answer (a status byte, keysOK and the frame for the
// client, or keysNotHome) to c; serve runs it when this node became
// the home meanwhile.
func (s *Server) homeSend(c *Conn, op string, serve func([]byte, func([]byte)), req uint32, owner uint64, msg []byte, try int) {
	answer := func(reply []byte, err error) {
		switch {
		case err != nil || len(reply) == 0:
			s.errorTo(c, codec.CodeUnavailable, req, nil, "the home node did not answer; retry")
		case reply[0] == keysNotHome && try+1 < keysTries:
			s.homeSend(c, op, serve, req, owner, msg, try+1) // the shard moved: its new home
			return
		case reply[0] != keysOK:
			s.errorTo(c, codec.CodeUnavailable, req, nil, "the home node is moving; retry")
		default:
			s.reply(c, reply[1:])
		}
		c.Flush()
	}
	home, err := s.homeOf(cluster.ShardOf(owner))
	if err != nil {
		answer(nil, err)
		return
	}
	if home == s.cl.node.Name() { // moved here since the frame came in
		serve(msg, func(reply []byte) { answer(reply, nil) })
		return
	}
	if err := s.cl.node.Send(home, op, msg, answer); err != nil {
		s.counters.busy.Add(1)
		s.errorTo(c, codec.CodeBusy, req, nil, "too many requests in flight to other nodes; retry")
		c.Flush()
	}
}

// serveKeys answers another node's "keys" request or publish.
func (s *Server) serveKeys(msg []byte, respond func([]byte)) {
	if len(msg) < 9 {
		respond([]byte{keysFailed})
		return
	}
	user, rest := binary.BigEndian.Uint64(msg[1:]), msg[9:]
	switch msg[0] {
	case keysOpFrame:
		s.serveKeysFrame(user, rest, respond)
	case keysOpPeers:
		s.deletes.start(func() { // reads the store: off the NATS goroutine, and before the store closes
			var out []byte
			for _, p := range s.groupPeersHere(user) {
				out = binary.BigEndian.AppendUint64(out, p)
			}
			respond(append([]byte{keysOK}, out...))
		})
	case keysOpNotice:
		if len(rest) < 2 {
			respond([]byte{keysFailed})
			return
		}
		dev := binary.BigEndian.Uint16(rest)
		var watchers []uint64
		for b := rest[2:]; len(b) >= 8; b = b[8:] {
			watchers = append(watchers, binary.BigEndian.Uint64(b))
		}
		s.deletes.start(func() { // a synced write, before the store closes
			s.noticesHere(watchers, user, dev)
			respond([]byte{keysOK})
		})
	case keysOpPending:
		s.servePending(user, len(rest) > 0 && rest[0] == 1, respond)
	case keysOpDrop:
		ns := decodeNotices(rest)
		drop := func() {
			if err := s.prekeys.DropNotices(user, ns); err != nil {
				s.log.Error("identity notices: drop", zap.Uint64("user", user), zap.Error(err))
			}
			respond([]byte{keysOK})
		}
		if !s.commits.submit(user, drop) { // on the lane: before the user's later requests
			respond([]byte{keysFailed})
		}
	case keysOpWrite:
		if c, ok := s.sessions.Lookup(user); ok {
			c.Write(rest)
			c.Flush()
		}
	case keysOpPoke:
		if c, ok := s.sessions.Lookup(user); ok {
			go s.pullKeys(c, user, false)
		}
	default:
		respond([]byte{keysFailed})
	}
}

// serveKeysFrame runs a directory frame here, at the keys' home, as
// keysFrame does for a local session.
func (s *Server) serveKeysFrame(user uint64, rest []byte, respond func([]byte)) {
	if len(rest) < 1 {
		respond([]byte{keysFailed})
		return
	}
	f := codec.New(codec.Type(rest[0]))
	if f == nil || f.Decode(rest[1:]) != nil {
		respond(append([]byte{keysOK}, codec.AppendError(nil, codec.CodeMalformed, 0, nil, "bad directory request from another node")...))
		return
	}
	if !s.local(keysOwner(user, f)) {
		respond([]byte{keysNotHome})
		return
	}
	req, key, now, job := s.keysJob(user, f)
	if job == nil {
		respond(append([]byte{keysOK}, now...))
		return
	}
	if !s.commits.submit(key, func() {
		if !s.local(key) { // frozen for a move since: its new home answers
			respond([]byte{keysNotHome})
			return
		}
		respond(append([]byte{keysOK}, job()...))
	}) {
		s.counters.busy.Add(1)
		respond(append([]byte{keysOK}, codec.AppendError(nil, codec.CodeBusy, req, nil, "too many requests queued; retry")...))
	}
}

// servePending answers a session's node with the notices waiting here
// for user and, when low is asked, its device's counts if they are low.
// On user's lane, as a local login's check is.
func (s *Server) servePending(user uint64, low bool, respond func([]byte)) {
	if !s.local(user) {
		respond([]byte{keysNotHome})
		return
	}
	if !s.commits.submit(user, func() {
		out := []byte{keysOK, 0, 0, 0, 0, 0}
		if low {
			if counts, err := s.prekeys.Count(user, keysDevice); err == nil && s.prekeys.Low(counts) {
				out[1] = 1
				binary.BigEndian.PutUint16(out[2:], uint16(counts.EC))
				binary.BigEndian.PutUint16(out[4:], uint16(counts.KEM))
			}
		}
		ns, err := s.prekeys.Notices(user)
		if err != nil {
			s.log.Error("identity notices", zap.Uint64("user", user), zap.Error(err))
		}
		respond(appendNotices(out, ns))
	}) {
		respond([]byte{keysFailed})
	}
}

func appendNotices(b []byte, ns []codec.IdentityChanged) []byte {
	for _, n := range ns {
		b = binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint64(b, n.User), n.Device)
	}
	return b
}

func decodeNotices(b []byte) []codec.IdentityChanged {
	var ns []codec.IdentityChanged
	for ; len(b) >= 10; b = b[10:] {
		ns = append(ns, codec.IdentityChanged{User: binary.BigEndian.Uint64(b), Device: binary.BigEndian.Uint16(b[8:])})
	}
	return ns
}

// pullKeys writes to c, a session of user away from its home, the
// identity notices waiting at the home (and KEYS_LOW when low is asked
// and the device is low), then has the home drop the notices written.
// It makes requests: not on an event loop.
func (s *Server) pullKeys(c *Conn, user uint64, low bool) {
	home, err := s.homeOf(cluster.ShardOf(user))
	if err != nil {
		return // the next login asks again
	}
	if home == s.cl.node.Name() { // the shard moved here
		if low {
			s.keysAtLogin(c, user)
		} else {
			s.commits.submit(user, func() { s.sendNotices(c, user) })
		}
		return
	}
	msg := binary.BigEndian.AppendUint64([]byte{keysOpPending}, user)
	msg = append(msg, map[bool]byte{false: 0, true: 1}[low])
	reply, err := s.cl.node.Request(s.ctx(), home, "keys", msg)
	if err != nil || len(reply) < 6 || reply[0] != keysOK {
		s.cl.log.Debug("identity notices not read from the home", zap.Uint64("user", user), zap.Error(err))
		return
	}
	ns := decodeNotices(reply[6:])
	sent := ns[:0]
	for _, n := range ns {
		if !c.Write(n.Append(nil)) {
			break // the session is gone: the rest wait for the next login
		}
		sent = append(sent, n)
	}
	if reply[1] == 1 {
		s.counters.keys.low.Add(1)
		c.Write((&codec.KeysLow{Device: keysDevice, EC: binary.BigEndian.Uint16(reply[2:]), KEM: binary.BigEndian.Uint16(reply[4:])}).Append(nil))
	}
	if len(sent) > 0 {
		// Sent before the flush: the home takes the drop on the user's lane
		// before any request the client makes after reading the notices,
		// as a local login's notices are dropped before the next answer.
		drop := appendNotices(binary.BigEndian.AppendUint64([]byte{keysOpDrop}, user), sent)
		if err := s.cl.node.Send(home, "keys", drop, func(_ []byte, err error) {
			if err != nil { // sent again at the next login, which a client takes as the first
				s.cl.log.Debug("identity notices not dropped at the home", zap.Uint64("user", user), zap.Error(err))
			}
		}); err != nil {
			s.cl.log.Debug("identity notices not dropped at the home", zap.Uint64("user", user), zap.Error(err))
		}
	}
	c.Flush()
}

// awayNode names the node of user's session when user is homed here and
// its session is on another node ("" otherwise).
func (s *Server) awayNode(user uint64) string {
	if s.rm == nil {
		return ""
	}
	s.rm.mu.Lock()
	defer s.rm.mu.Unlock()
	if a := s.rm.away[user]; a != nil && a.node != s.cl.node.Name() {
		return a.node
	}
	return ""
}

// toSession writes frame to user's session: here, or (user homed here)
// on the node its session is on. Not stored: a lost one is made up at
// the next login.
func (s *Server) toSession(user uint64, frame []byte) {
	if c, ok := s.sessions.Lookup(user); ok {
		c.Write(frame)
		c.Flush()
		return
	}
	if node := s.awayNode(user); node != "" {
		s.cl.node.Publish(node, "keys", append(binary.BigEndian.AppendUint64([]byte{keysOpWrite}, user), frame...))
	}
}

// pokeAway tells the node of user's session (user homed here) that
// notices wait here for it.
func (s *Server) pokeAway(user uint64) {
	if node := s.awayNode(user); node != "" {
		s.cl.node.Publish(node, "keys", binary.BigEndian.AppendUint64([]byte{keysOpPoke}, user))
	}
}

// identityChangedCluster is identityChanged in a cluster, at user's
// home: the fetchers are here, the groups user shares with others are at
// their homes (every node is asked for the members of those it keeps),
// and each watcher's notice is stored at the watcher's home, which tells
// its session wherever it is. A node that does not answer costs its
// notices; a watcher still sees the new identity key at its next fetch.
func (s *Server) identityChangedCluster(user uint64, dev uint16) {
	watchers := s.watchersHere(user)
	me := s.cl.node.Name()
	peers := binary.BigEndian.AppendUint64([]byte{keysOpPeers}, user)
	for _, node := range s.cl.node.LiveNodes() {
		if node == me {
			continue
		}
		reply, err := s.keysRequest(node, peers)
		if err != nil {
			s.cl.log.Warn("identity change: a node did not list group members", zap.String("node", node), zap.Error(err))
			continue
		}
		for b := reply[1:]; len(b) >= 8; b = b[8:] {
			watchers = append(watchers, binary.BigEndian.Uint64(b))
		}
	}
	byHome := map[string][]uint64{}
	for _, w := range watchers {
		if w == user {
			continue
		}
		home, err := s.homeOf(cluster.ShardOf(w))
		if err != nil {
			s.cl.log.Warn("identity change: no home for a watcher", zap.Uint64("watcher", w), zap.Error(err))
			continue
		}
		byHome[home] = append(byHome[home], w)
	}
	for home, ws := range byHome {
		if home == me {
			s.noticesHere(ws, user, dev)
			continue
		}
		msg := binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint64([]byte{keysOpNotice}, user), dev)
		for _, w := range ws {
			msg = binary.BigEndian.AppendUint64(msg, w)
		}
		if _, err := s.keysRequest(home, msg); err != nil {
			s.cl.log.Warn("identity change: notices not stored at a watcher's home", zap.String("node", home),
				zap.Int("watchers", len(ws)), zap.Error(err))
		}
	}
}

// keysRequest is a "keys" homeRequest.
func (s *Server) keysRequest(node string, msg []byte) ([]byte, error) {
	return s.homeRequest(node, "keys", msg)
}

// homeRequest sends an op request, again after a short wait when no
// answer came (each such request is idempotent), and checks the
// answer's status byte.
func (s *Server) homeRequest(node, op string, msg []byte) ([]byte, error) {
	var reply []byte
	var err error
	for try := 0; try < keysTries; try++ {
		if try > 0 {
			select {
			case <-s.closing:
				return nil, err
			case <-time.After(time.Duration(try) * 200 * time.Millisecond):
			}
		}
		ctx, cancel := context.WithTimeout(s.ctx(), 10*time.Second)
		reply, err = s.cl.node.Request(ctx, node, op, msg)
		cancel()
		if err == nil && (len(reply) == 0 || reply[0] != keysOK) {
			err = errKeysRefused
		}
		if err == nil {
			return reply, nil
		}
	}
	return nil, err
}

// errKeysRefused is a "keys" answer other than OK.
var errKeysRefused = errors.New("server: the node refused the keys request")
