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
// 10). Each decodes and copies its request on the event loop and runs on
// a commit lane: an upload on the uploader's, a fetch on the target's,
// so that one user's keys change in the order the requests came. The
// store's own per-user lock makes a take exactly-once whatever the lane.
func (s *Server) keysFrame(c *Conn, t codec.Type, body []byte) error {
	f := codec.New(t)
	if err := f.Decode(body); err != nil {
		return s.malformed(c, err)
	}
	if s.cl != nil {
		// The directory lives in one node's store. A cluster would route
		// each request to the user's home as it does for the inbox (and
		// move the keys with a shard); until then a cluster refuses
		// plainly rather than serve keys from whichever node the client
		// reached.
		s.errorTo(c, codec.CodeKeysClustered, keysReq(f), nil, "this server runs as a cluster node, which does not serve the prekey directory yet")
		return nil
	}
	user := c.State.user.Load()
	req, key, job := s.keysJob(c, user, f)
	if job == nil {
		return nil // answered on the event loop
	}
	if !s.commits.submit(key, func() { job(); c.Flush() }) {
		s.counters.busy.Add(1)
		s.errorTo(c, codec.CodeBusy, req, nil, "too many requests queued; retry")
	}
	return nil
}

// keysJob checks what it can on the event loop and returns the request id,
// the lane key and the work (nil when it already answered).
func (s *Server) keysJob(c *Conn, user uint64, f codec.Frame) (req uint32, key uint64, job func()) {
	switch f := f.(type) {
	case *codec.KeysUpload:
		if s.storageFull() {
			s.errorTo(c, codec.CodeStorageFull, f.Req, nil, "the server's disk is nearly full; retry later")
			return f.Req, user, nil
		}
		up := copyUpload(f)
		return f.Req, user, func() { s.keysUpload(c, user, up) }
	case *codec.KeysCount:
		return f.Req, user, func() {
			counts, err := s.prekeys.Count(user, keysDevice)
			if err != nil {
				s.keysError(c, f.Req, err)
				return
			}
			s.reply(c, countsFrame(f.Req, counts))
		}
	case *codec.KeysCheck:
		return f.Req, user, func() {
			ok, err := s.prekeys.Check(user, keysDevice, f.Digest)
			switch {
			case err != nil:
				s.keysError(c, f.Req, err)
			case !ok:
				s.errorTo(c, codec.CodeKeysMismatch, f.Req, nil, "the server's long-lived keys for this device differ from the digest (or there are none): upload them again")
			default:
				s.reply(c, (&codec.OK{Req: f.Req}).Append(nil))
			}
		}
	case *codec.KeysFetch:
		if !s.accounts.Exists(f.User) {
			s.errorTo(c, codec.CodeUnknownUser, f.Req, nil, fmt.Sprintf("no user %d", f.User))
			return f.Req, f.User, nil
		}
		if ok, wait := s.fetches.allow(user, f.User, time.Now()); !ok {
			s.counters.keys.fetchLimited.Add(1)
			s.errorTo(c, codec.CodeFetchLimited, f.Req, nil, fmt.Sprintf(
				"at most %d fetches of one user's keys per %v; retry in %d s", s.cfg.KeyFetches, s.cfg.KeyFetchWindow, int(wait.Seconds())+1))
			return f.Req, f.User, nil
		}
		target, dev := f.User, f.Device
		return f.Req, target, func() { s.keysFetch(c, f.Req, user, target, dev) }
	}
	return 0, 0, nil
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

// keysUpload runs on the uploader's lane. A new identity key is announced
// to everyone who may hold a session with the old one.
func (s *Server) keysUpload(c *Conn, user uint64, up *codec.KeysUpload) {
	res, err := s.prekeys.Upload(user, keysDevice, up)
	if err != nil {
		s.keysError(c, up.Req, err)
		return
	}
	s.counters.keys.uploads.Add(1)
	s.reply(c, countsFrame(up.Req, res.Counts))
	if res.Changed {
		s.counters.keys.identityChanged.Add(1)
		s.identityChanged(user, keysDevice)
	}
}

// keysFetch runs on the target's lane.
func (s *Server) keysFetch(c *Conn, req uint32, requester, target uint64, dev uint16) {
	res, err := s.prekeys.Fetch(requester, target, dev)
	if err != nil {
		s.keysError(c, req, err)
		return
	}
	s.counters.keys.bundles.Add(uint64(len(res.Bundles)))
	s.counters.keys.lastResort.Add(uint64(res.LastResort))
	s.reply(c, (&codec.KeysBundle{Req: req, User: target, Bundles: res.Bundles}).Append(nil))
	s.counters.keys.low.Add(uint64(len(res.Low)))
	if len(res.Low) == 0 {
		return
	}
	// The owner refills without polling: told now if online, at its next
	// login otherwise (keysAtLogin).
	if tc, ok := s.sessions.Lookup(target); ok {
		for _, l := range res.Low {
			tc.Write(lowFrame(l.Device, l.Counts))
		}
		tc.Flush()
	}
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
	watchers, err := s.prekeys.Fetchers(user)
	if err != nil {
		s.log.Error("identity change: fetchers", zap.Uint64("user", user), zap.Error(err))
	}
	groups, err := s.groups.List(user)
	if err != nil {
		s.log.Error("identity change: groups", zap.Uint64("user", user), zap.Error(err))
	}
	for _, gs := range groups {
		g, err := s.groups.Get(gs.Group)
		if err != nil {
			continue
		}
		g.Mu.RLock()
		for _, m := range g.Members() {
			watchers = append(watchers, m.User)
		}
		g.Mu.RUnlock()
	}
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
// identity notices that waited, and KEYS_LOW when its device is low.
func (s *Server) keysAtLogin(c *Conn, user uint64) {
	if s.cl != nil {
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

// keysError answers a failed directory request.
func (s *Server) keysError(c *Conn, req uint32, err error) {
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
		s.errorTo(c, codec.CodeInternal, req, nil, "the key store failed; retry")
		return
	}
	s.errorTo(c, code, req, nil, strings.TrimPrefix(err.Error(), "prekey: "))
}
