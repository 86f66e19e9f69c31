package server

import (
	"encoding/binary"
	"sync"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/store"
	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/zap"
)

// presence tracks who watches whom and tells watchers of changes. Changes
// are coalesced: a user's change marks it dirty, and one goroutine sends
// each dirty user's current state once per interval, so a user whose
// connection flaps costs its watchers at most one update per interval.
//
// Last seen and the privacy flag persist under 'l' | user.
type presence struct {
	s        *Server
	interval time.Duration

	mu       sync.Mutex
	watchers map[uint64]map[*Conn]struct{} // watched user -> watching connections
	dirty    map[uint64]struct{}
	seen     map[uint64]uint64 // last seen to write (unix ms), by user
	stop     chan struct{}
	done     chan struct{}
}

// maxSubscriptions bounds one connection's subscriptions.
const maxSubscriptions = 4096

func newPresence(s *Server, interval time.Duration) *presence {
	p := &presence{s: s, interval: interval, watchers: map[uint64]map[*Conn]struct{}{},
		dirty: map[uint64]struct{}{}, seen: map[uint64]uint64{}, stop: make(chan struct{}), done: make(chan struct{})}
	go p.run()
	return p
}

// changed marks user's presence as changed. It never blocks.
func (p *presence) changed(user uint64, offlineAt uint64) {
	p.mu.Lock()
	p.dirty[user] = struct{}{}
	if offlineAt != 0 {
		p.seen[user] = offlineAt
	}
	p.mu.Unlock()
}

func (p *presence) close() {
	close(p.stop)
	<-p.done
}

func (p *presence) run() {
	defer close(p.done)
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			p.tick()
			return
		case <-t.C:
			p.tick()
		}
	}
}

// tick persists last-seen times and sends one update per dirty user.
func (p *presence) tick() {
	p.mu.Lock()
	dirty, seen := p.dirty, p.seen
	p.dirty, p.seen = map[uint64]struct{}{}, map[uint64]uint64{}
	p.mu.Unlock()
	if len(seen) > 0 {
		b := p.s.db.NewBatch()
		for u, at := range seen {
			_, priv := p.read(u)
			b.Set(lastSeenKey(u), lastSeenValue(at, priv), nil)
		}
		// Not Sync: a crash may lose the last few seconds of last-seen
		// times, never a message; the next Sync commit flushes these.
		if err := b.Commit(pebble.NoSync); err != nil {
			p.s.log.Error("presence: write last seen", zap.Error(err))
		}
		b.Close()
	}
	if len(dirty) == 0 {
		return
	}
	fb := p.s.batch()
	for u := range dirty {
		frame := p.frame(u)
		p.mu.Lock()
		for c := range p.watchers[u] {
			if c.Write(frame) {
				fb.Add(c)
			}
		}
		p.mu.Unlock()
	}
	p.s.flush(fb)
}

// frame encodes user's current presence.
func (p *presence) frame(user uint64) []byte {
	f := codec.Presence{User: user}
	last, priv := p.read(user)
	_, online := p.s.sessions.Lookup(user)
	switch {
	case priv&byte(codec.PrivacyHideLastSeen) != 0:
		f.State = codec.PresenceHidden
	case online:
		f.State = codec.PresenceOnline
	default:
		f.State, f.LastSeen = codec.PresenceOffline, last
	}
	return f.Append(nil)
}

// read returns user's stored last-seen time and privacy flags.
func (p *presence) read(user uint64) (uint64, byte) {
	v, closer, err := p.s.db.Get(lastSeenKey(user))
	if err != nil {
		return 0, 0
	}
	defer closer.Close()
	if len(v) != 9 {
		return 0, 0
	}
	return binary.BigEndian.Uint64(v), v[8]
}

func (p *presence) setPrivacy(user uint64, flags byte) error {
	last, _ := p.read(user)
	if err := p.s.db.Set(lastSeenKey(user), lastSeenValue(last, flags), pebble.Sync); err != nil {
		return err
	}
	p.changed(user, 0)
	return nil
}

// forget drops every subscription of c (it closed).
func (p *presence) forget(c *Conn, subs []uint64) {
	p.mu.Lock()
	for _, u := range subs {
		if w := p.watchers[u]; w != nil {
			delete(w, c)
			if len(w) == 0 {
				delete(p.watchers, u)
			}
		}
	}
	p.mu.Unlock()
}

func lastSeenKey(user uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{store.PrefixLastSeen}, user)
}

func lastSeenValue(at uint64, privacy byte) []byte {
	return append(binary.BigEndian.AppendUint64(nil, at), privacy)
}

// presenceFrame handles SUBSCRIBE, UNSUBSCRIBE and PRIVACY.
func (s *Server) presenceFrame(c *Conn, t codec.Type, body []byte) error {
	st := &c.State
	switch t {
	case codec.TypeSubscribe:
		var f codec.Subscribe
		if err := f.Decode(body); err != nil {
			return s.malformed(c, err)
		}
		st.dmu.Lock()
		if len(st.subs)+f.Users.Len() > maxSubscriptions {
			st.dmu.Unlock()
			s.errorTo(c, codec.CodeTooManyTargets, 0, nil, "")
			return nil
		}
		var added []uint64
		s.presence.mu.Lock()
		for i := 0; i < f.Users.Len(); i++ {
			u := f.Users.At(i)
			if !s.accounts.Exists(u) {
				continue
			}
			w := s.presence.watchers[u]
			if w == nil {
				w = map[*Conn]struct{}{}
				s.presence.watchers[u] = w
			}
			if _, dup := w[c]; !dup {
				w[c] = struct{}{}
				st.subs = append(st.subs, u)
			}
			added = append(added, u)
		}
		s.presence.mu.Unlock()
		st.dmu.Unlock()
		for _, u := range added {
			s.reply(c, s.presence.frame(u))
		}
	case codec.TypeUnsubscribe:
		var f codec.Unsubscribe
		if err := f.Decode(body); err != nil {
			return s.malformed(c, err)
		}
		drop := ids(f.Users)
		s.presence.forget(c, drop)
		st.dmu.Lock()
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
		st.dmu.Unlock()
	case codec.TypePrivacy:
		var f codec.Privacy
		if err := f.Decode(body); err != nil {
			return s.malformed(c, err)
		}
		if err := s.presence.setPrivacy(st.user.Load(), byte(f.Flags)); err != nil {
			s.log.Error("privacy not stored", zap.Error(err))
			s.errorTo(c, codec.CodeInternal, 0, nil, "")
		}
	}
	return nil
}
