package server

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/prekey"
	"go.uber.org/zap"
)

// keysDevice is the device every session speaks for until multi-device
// exists: the directory is keyed by (user, device) already, so adding
// devices changes who picks the number, not the storage.
const keysDevice = 1

// keysFrame handles the prekey directory's requests (PROTOCOL.md section
// 11). Each decodes and copies its request on the event loop and runs on
// a commit lane: an upload on the uploader's, a fetch on the target's,
// so that one user's keys change in the order the requests came. The
// store's own per-user lock makes a take exactly-once whatever the lane.
// In a cluster the keys live at their user's home (the target's for a
// fetch), and a request for another home goes there (cluster_keys.go).
func (s *Server) keysFrame(c *Conn, t codec.Type, body []byte) error {
	f := codec.New(t)
	if err := f.Decode(body); err != nil {
		return s.malformed(c, err)
	}
	user := c.State.user.Load()
	if s.cl != nil && !s.local(keysOwner(user, f)) {
		s.keysRemote(c, keysReq(f), keysOwner(user, f), user, t, body)
		return nil
	}
	req, key, now, job := s.keysJob(user, f)
	if job == nil {
		s.reply(c, now) // answered at once
		return nil
	}
	s.atHome(c, key, req, job, "the keys' home node changed; retry")
	return nil
}

// keysOwner is the user whose keys a request is about: the target of a
// fetch, the sender otherwise. Its home runs the request.
func keysOwner(user uint64, f codec.Frame) uint64 {
	if f, ok := f.(*codec.KeysFetch); ok {
		return f.User
	}
	return user
}

// keysJob checks what it can at once and returns the request id, the
// lane key and the work, which returns the answer; when the answer is
// known at once, job is nil and now is the answer. It runs at the keys'
// home, so the fetch limit counts every fetch of the target wherever the
// requester is connected.
func (s *Server) keysJob(user uint64, f codec.Frame) (req uint32, key uint64, now []byte, job func() []byte) {
	switch f := f.(type) {
	case *codec.KeysUpload:
		if s.storageFull() {
			return f.Req, user, codec.AppendError(nil, codec.CodeStorageFull, f.Req, nil, "the server's disk is nearly full; retry later"), nil
		}
		up := copyUpload(f)
		return f.Req, user, nil, func() []byte { return s.keysUpload(user, up) }
	case *codec.KeysCount:
		return f.Req, user, nil, func() []byte {
			counts, err := s.prekeys.Count(user, keysDevice)
			if err != nil {
				return s.keysError(f.Req, err)
			}
			return countsFrame(f.Req, counts)
		}
	case *codec.KeysCheck:
		return f.Req, user, nil, func() []byte {
			ok, err := s.prekeys.Check(user, keysDevice, f.Digest)
			switch {
			case err != nil:
				return s.keysError(f.Req, err)
			case !ok:
				return codec.AppendError(nil, codec.CodeKeysMismatch, f.Req, nil, "the server's long-lived keys for this device differ from the digest (or there are none): upload them again")
			default:
				return (&codec.OK{Req: f.Req}).Append(nil)
			}
		}
	case *codec.KeysFetch:
		if !s.accounts.Exists(f.User) {
			return f.Req, f.User, codec.AppendError(nil, codec.CodeUnknownUser, f.Req, nil, fmt.Sprintf("no user %d", f.User)), nil
		}
		if ok, wait := s.fetches.allow(user, f.User, time.Now()); !ok {
			s.counters.keys.fetchLimited.Add(1)
			return f.Req, f.User, codec.AppendError(nil, codec.CodeFetchLimited, f.Req, nil, fmt.Sprintf(
				"at most %d fetches of one user's keys per %v; retry in %d s", s.cfg.KeyFetches, s.cfg.KeyFetchWindow, int(wait.Seconds())+1)), nil
		}
		target, dev := f.User, f.Device
		return f.Req, target, nil, func() []byte { return s.keysFetch(f.Req, user, target, dev) }
	}
	return 0, 0, codec.AppendError(nil, codec.CodeMalformed, 0, nil, "not a directory request"), nil
}

// keysReq is a directory request's req.
func keysReq(f codec.Frame) uint32 {
	switch f := f.(type) {
	case *codec.KeysUpload:
		return f.Req
	case *codec.KeysCount:
		return f.Req
	case *codec.KeysFetch:
		return f.Req
	case *codec.KeysCheck:
		return f.Req
	}
	return 0
}

// copyUpload copies what the frame aliases in the read buffer.
func copyUpload(f *codec.KeysUpload) *codec.KeysUpload {
	up := *f
	if f.Signed != nil {
		spk := *f.Signed
		up.Signed = &spk
	}
	if f.LastResort != nil {
		lr := *f.LastResort
		lr.Key = slices.Clone(lr.Key)
		up.LastResort = &lr
	}
	up.EC = slices.Clone(f.EC)
	up.KEM = slices.Clone(f.KEM)
	for i := range up.KEM {
		up.KEM[i].Key = slices.Clone(up.KEM[i].Key)
	}
	return &up
}

func countsFrame(req uint32, c prekey.Counts) []byte {
	return (&codec.KeysCounts{Req: req, Device: keysDevice, EC: uint16(c.EC), KEM: uint16(c.KEM)}).Append(nil)
}

// keysUpload runs on the uploader's lane and returns the answer. A new
// identity key is announced to everyone who may hold a session with the
// old one.
func (s *Server) keysUpload(user uint64, up *codec.KeysUpload) []byte {
	res, err := s.prekeys.Upload(user, keysDevice, up)
	if err != nil {
		return s.keysError(up.Req, err)
	}
	s.counters.keys.uploads.Add(1)
	if res.Changed {
		s.counters.keys.identityChanged.Add(1)
		if s.cl != nil {
			// Requests to other nodes: off the lane, in the background work
			// that Close waits for before the store closes.
			s.deletes.start(func() { s.identityChangedCluster(user, keysDevice) })
		} else {
			s.identityChanged(user, keysDevice)
		}
	}
	return countsFrame(up.Req, res.Counts)
}

// keysFetch runs on the target's lane and returns the answer.
func (s *Server) keysFetch(req uint32, requester, target uint64, dev uint16) []byte {
	res, err := s.prekeys.Fetch(requester, target, dev)
	if err != nil {
		return s.keysError(req, err)
	}
	s.counters.keys.bundles.Add(uint64(len(res.Bundles)))
	s.counters.keys.lastResort.Add(uint64(res.LastResort))
	s.counters.keys.low.Add(uint64(len(res.Low)))
	// The owner refills without polling: told now if online (on any node
	// of a cluster), at its next login otherwise (keysAtLogin).
	for _, l := range res.Low {
		s.toSession(target, lowFrame(l.Device, l.Counts))
	}
	return (&codec.KeysBundle{Req: req, User: target, Bundles: res.Bundles}).Append(nil)
}

func lowFrame(dev uint16, c prekey.Counts) []byte {
	return (&codec.KeysLow{Device: dev, EC: uint16(c.EC), KEM: uint16(c.KEM)}).Append(nil)
}

// identityChanged tells every user who may have a session with user's
// device dev (those who fetched its keys, and the members of groups they
// share) that its identity key changed: like Signal's "safety number
// changed". Each notice is stored first and removed once written to a
// live session, now or at the user's next login: at least once, since a
// connection can drop right after the write, in which case the peer
// still sees the new identity key in its next KEYS_FETCH.
func (s *Server) identityChanged(user uint64, dev uint16) {
	s.noticesHere(s.watchersHere(user), user, dev)
}

// watchersHere lists who this node knows may hold a session with user:
// the fetchers of its keys (kept at its home) and the members of the
// groups homed here that user is in. Not sorted, and with repeats.
func (s *Server) watchersHere(user uint64) []uint64 {
	watchers, err := s.prekeys.Fetchers(user)
	if err != nil {
		s.log.Error("identity change: fetchers", zap.Uint64("user", user), zap.Error(err))
	}
	return append(watchers, s.groupPeersHere(user)...)
}

// groupPeersHere lists the members of the groups homed here that user is
// in (every group, on one node).
func (s *Server) groupPeersHere(user uint64) []uint64 {
	groups, err := s.groups.List(user)
	if err != nil {
		s.log.Error("identity change: groups", zap.Uint64("user", user), zap.Error(err))
	}
	var peers []uint64
	for _, gs := range groups {
		if s.cl != nil && !s.local(gs.Group) {
			continue
		}
		g, err := s.groups.Get(gs.Group)
		if err != nil {
			continue
		}
		g.Mu.RLock()
		for _, m := range g.Members() {
			peers = append(peers, m.User)
		}
		g.Mu.RUnlock()
	}
	return peers
}

// noticesHere stores a notice that user's device dev changed identity
// for each of watchers that has an account here (in a cluster: those
// homed here) and tells those online.
func (s *Server) noticesHere(watchers []uint64, user uint64, dev uint16) {
	slices.Sort(watchers)
	watchers = slices.Compact(watchers)
	watchers = slices.DeleteFunc(watchers, func(w uint64) bool { return w == user || !s.accounts.Exists(w) })
	if err := s.prekeys.AddNotices(watchers, user, dev); err != nil {
		s.log.Error("identity change: store notices", zap.Uint64("user", user), zap.Error(err))
		return
	}
	for _, w := range watchers {
		if wc, ok := s.sessions.Lookup(w); ok {
			s.sendNotices(wc, w)
		} else if s.cl != nil {
			s.pokeAway(w) // a session on another node fetches them from here
		}
	}
}

// sendNotices writes user's pending identity notices to its session c
// and drops them.
func (s *Server) sendNotices(c *Conn, user uint64) {
	ns, err := s.prekeys.Notices(user)
	if err != nil {
		s.log.Error("identity notices", zap.Uint64("user", user), zap.Error(err))
		return
	}
	if len(ns) == 0 {
		return
	}
	sent := ns[:0]
	for _, n := range ns {
		if !c.Write(n.Append(nil)) {
			break // the session is gone: the rest wait for the next login
		}
		sent = append(sent, n)
	}
	c.Flush()
	if err := s.prekeys.DropNotices(user, sent); err != nil {
		s.log.Error("identity notices: drop", zap.Uint64("user", user), zap.Error(err))
	}
}

// keysAtLogin sends a new session what the directory kept for it: the
// identity notices that waited, and KEYS_LOW when its device is low. In
// a cluster a session away from its user's home asks the home.
func (s *Server) keysAtLogin(c *Conn, user uint64) {
	if s.cl != nil && !s.local(user) {
		go s.pullKeys(c, user, true)
		return
	}
	s.commits.submit(user, func() {
		s.sendNotices(c, user)
		counts, err := s.prekeys.Count(user, keysDevice)
		if err == nil && s.prekeys.Low(counts) {
			s.counters.keys.low.Add(1)
			c.Write(lowFrame(keysDevice, counts))
			c.Flush()
		}
	})
}

// keysError is the answer to a failed directory request.
func (s *Server) keysError(req uint32, err error) []byte {
	var code codec.Code
	switch {
	case errors.Is(err, prekey.ErrBadSignature):
		code = codec.CodeBadSignature
		s.counters.keys.badSignature.Add(1)
	case errors.Is(err, prekey.ErrInvalid):
		code = codec.CodeInvalidKeys
		s.counters.keys.invalid.Add(1)
	case errors.Is(err, prekey.ErrFull):
		code = codec.CodeKeysFull
	case errors.Is(err, prekey.ErrNoKeys):
		code = codec.CodeNoKeys
	default:
		s.log.Error("prekey directory", zap.Error(err))
		return codec.AppendError(nil, codec.CodeInternal, req, nil, "the key store failed; retry")
	}
	return codec.AppendError(nil, code, req, nil, strings.TrimPrefix(err.Error(), "prekey: "))
}
