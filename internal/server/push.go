package server

import (
	"crypto/ecdh"
	"errors"
	"path/filepath"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/offline"
	"github.com/chatd/chatd/internal/push"
	"go.uber.org/zap"
)

// Push subscriptions (PUSH_SUBSCRIBE, PUSH_LIST, PUSH_REMOVE) and the
// pushes they bring (package push). Subscriptions live on the user's home
// node with the inbox, which alone knows when something is stored for an
// offline user; in a cluster a session on another node has its frames
// run there (cluster_push.go).

// pushDevice is the only device id until an account may have several.
const pushDevice = 1

// pushFrame handles the push subscription frames. The work runs on the
// user's commit lane, so one user's subscribe, list and remove are
// answered in order and a synced write never holds up the event loop.
func (s *Server) pushFrame(c *Conn, t codec.Type, body []byte) error {
	f := codec.New(t)
	if err := f.Decode(body); err != nil {
		return s.malformed(c, err)
	}
	user := c.State.user.Load()
	if s.cl != nil && !s.local(user) {
		s.pushRemote(c, pushReq(f), user, t, body)
		return nil
	}
	req, now, job := s.pushJob(user, f)
	if job == nil {
		s.reply(c, now)
		return nil
	}
	s.atHome(c, user, req, job, "your home node changed; retry")
	return nil
}

// pushJob checks what it can at once and returns the request id and the
// work, which returns the answer; when the answer is known at once, job
// is nil and now is the answer. It runs at the user's home.
func (s *Server) pushJob(user uint64, f codec.Frame) (req uint32, now []byte, job func() []byte) {
	switch f := f.(type) {
	case *codec.PushSubscribe:
		req = f.Req
		sub, code, detail := s.checkSubscription(f)
		if code != 0 {
			return req, codec.AppendError(nil, code, req, nil, detail), nil
		}
		return req, nil, func() []byte {
			if err := s.subs.Put(user, sub); err != nil {
				s.log.Error("push subscribe", zap.Uint64("user", user), zap.Error(err))
				return codec.AppendError(nil, codec.CodeInternal, req, nil, "subscription not stored; retry")
			}
			return (&codec.OK{Req: req}).Append(nil)
		}
	case *codec.PushList:
		req = f.Req
		return req, nil, func() []byte {
			subs, err := s.subs.List(user)
			if err != nil {
				s.log.Error("push list", zap.Uint64("user", user), zap.Error(err))
				return codec.AppendError(nil, codec.CodeInternal, req, nil, "subscriptions not read; retry")
			}
			out := &codec.PushSubs{Req: req}
			if s.pushes != nil {
				out.Key = s.pushes.Key().Public
			}
			for _, sub := range subs {
				out.Subs = append(out.Subs, codec.PushSub{Device: sub.Device, Created: sub.Created, Endpoint: []byte(sub.Endpoint)})
			}
			return out.Append(nil)
		}
	case *codec.PushRemove:
		req = f.Req
		device := f.Device
		return req, nil, func() []byte {
			err := s.subs.Remove(user, device)
			switch {
			case errors.Is(err, push.ErrUnknownDevice):
				return codec.AppendError(nil, codec.CodePushUnknownDevice, req, nil, "no push subscription for that device")
			case err != nil:
				s.log.Error("push remove", zap.Uint64("user", user), zap.Error(err))
				return codec.AppendError(nil, codec.CodeInternal, req, nil, "subscription not removed; retry")
			}
			return (&codec.OK{Req: req}).Append(nil)
		}
	}
	return 0, codec.AppendError(nil, codec.CodeMalformed, 0, nil, "not a push request"), nil
}

// pushReq is the req of a push subscription frame.
func pushReq(f codec.Frame) uint32 {
	switch f := f.(type) {
	case *codec.PushSubscribe:
		return f.Req
	case *codec.PushList:
		return f.Req
	case *codec.PushRemove:
		return f.Req
	}
	return 0
}

// checkSubscription refuses what the server will not post to, with the
// error code a client can act on.
func (s *Server) checkSubscription(f *codec.PushSubscribe) (push.Subscription, codec.Code, string) {
	var sub push.Subscription
	endpoint := string(f.Endpoint)
	switch {
	case s.pushes == nil:
		return sub, codec.CodePushDisabled, "this server sends no pushes"
	case f.Device != pushDevice:
		return sub, codec.CodePushBadDevice, "device must be 1"
	}
	if err := s.pushes.Policy().Check(endpoint); err != nil {
		if errors.Is(err, push.ErrHostRefused) {
			return sub, codec.CodePushHostRefused, err.Error()
		}
		return sub, codec.CodePushNotHTTPS, err.Error()
	}
	if _, err := ecdh.P256().NewPublicKey(f.P256dh); err != nil {
		return sub, codec.CodePushBadKey, "p256dh is not an uncompressed P-256 point"
	}
	return push.Subscription{
		Device: f.Device, Created: uint64(time.Now().UnixMilli()), Endpoint: endpoint,
		P256dh: append([]byte(nil), f.P256dh...), Auth: append([]byte(nil), f.Auth...),
	}, 0, ""
}

// duePushes tells package push of entries stored for users with no live
// session: messages at high urgency, receipts at low. Group events wake
// nobody; the next sync brings them. It runs on the inbox lane and costs
// a map lookup for a user without subscriptions.
func (s *Server) duePushes(entries []*offline.Stored) {
	for _, e := range entries {
		if e.To == 0 {
			continue
		}
		switch e.Kind {
		case offline.KindMessage, offline.KindGroupMessage:
			s.pushes.Due(e.To, push.UrgencyHigh)
		case offline.KindReceipt:
			s.pushes.Due(e.To, push.UrgencyLow)
		}
	}
}

// dropPushSubscriptions deletes user's subscriptions: a LOGOUT or a
// PASSWORD change ends what the device was trusted with, and a device that
// logs in again subscribes again. In a cluster they are deleted at the
// user's home, wherever the LOGOUT or PASSWORD came. It may wait for
// another node: not on an event loop.
func (s *Server) dropPushSubscriptions(user uint64) {
	if err := s.deletePushSubscriptions(user); err != nil {
		s.log.Error("push: delete subscriptions", zap.Uint64("user", user), zap.Error(err))
	}
}

// pushPending reports whether user's inbox holds entries: a push left due
// by the last run is sent only then.
func (s *Server) pushPending(user uint64) bool {
	found := false
	err := s.inbox.Read(user, 0, 1, func(*offline.Entry) bool { found = true; return false })
	return err != nil || found // on a read error, push: a spurious push costs less than a lost one
}

// Push returns the push service (nil when push is off), for tests and
// account deletion.
func (s *Server) Push() *push.Service { return s.pushes }

// PushSubscriptions is the subscription store (account deletion deletes
// from it through deletePushSubscriptions, at the user's home).
func (s *Server) PushSubscriptions() *push.Store { return s.subs }

// openPush opens the subscription store and, unless push is off, the push
// service; Start follows once the inbox is open.
func (s *Server) openPush() error {
	var err error
	if s.subs, err = push.OpenStore(s.db); err != nil {
		return err
	}
	pc := s.cfg.Push
	if pc.KeyFile == "" {
		pc.KeyFile = filepath.Join(s.cfg.DataDir, "vapid.key")
	}
	if pc.TTL == 0 {
		pc.TTL = s.cfg.TTL // zero: push's default, 28 days, under the inbox's 30
	}
	pc.Online, pc.Pending, pc.Logger = s.online, s.pushPending, s.log
	if s.pushes, err = push.Open(s.subs, pc); err != nil {
		return err
	}
	if s.pushes != nil {
		s.log.Info("web push on", zap.String("vapid_public_key", s.pushes.Key().PublicBase64()),
			zap.Strings("allow_hosts", pc.AllowHosts), zap.Bool("allow_http_loopback", pc.AllowHTTPLoopback))
	}
	return nil
}

// PushInfo is what the admin listener's /push shows.
type PushInfo struct {
	Enabled           bool     `json:"enabled"`
	VAPIDPublicKey    string   `json:"vapid_public_key,omitempty"` // base64url: an app's applicationServerKey
	Subject           string   `json:"subject,omitempty"`
	AllowHosts        []string `json:"allow_hosts"`
	AllowHTTPLoopback bool     `json:"allow_http_loopback"`
	SubscribedUsers   int      `json:"subscribed_users"`
}

// PushInfo describes the push configuration in force.
func (s *Server) PushInfo() PushInfo {
	info := PushInfo{Enabled: s.pushes != nil, AllowHosts: s.cfg.Push.AllowHosts, AllowHTTPLoopback: s.cfg.Push.AllowHTTPLoopback,
		SubscribedUsers: s.subs.Users()}
	if s.pushes != nil {
		info.VAPIDPublicKey, info.Subject = s.pushes.Key().PublicBase64(), s.pushes.Subject()
	}
	if info.AllowHosts == nil {
		info.AllowHosts = []string{}
	}
	return info
}
