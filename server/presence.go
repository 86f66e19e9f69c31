package server

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/store"
	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/zap"
)

// presence tracks who watches whom and tells watchers of changes. Changes
// are coalesced: a user's change marks it dirty, and one goroutine sends
// each dirty user's current state once per interval. Each watcher
// remembers the last state it was sent about each user and is never sent
// the same state twice in a row. So a watcher gets at most one update per
// interval about one user, and a connection that flaps faster than the
// interval costs its watchers nothing until its state really differs.
//
// Last seen and the privacy flags persist together under 'l' | user.
//
// Locks, in order: the session's dmu, then mu, then a connection's queue
// lock (PRESENCE frames are queued under mu, so a watcher's updates about
// one user are queued in the order they were decided). wmu is a leaf
// lock, never held across an fsync.
type presence struct {
	s        *Server
	interval time.Duration
	ticks    atomic.Uint64 // completed ticks, for tests

	mu       sync.Mutex
	watchers map[uint64]map[*Conn]sentPresence // watched user -> watching connections
	dirty    map[uint64]struct{}
	seen     map[uint64]uint64 // last seen to write (unix ms), by user

	// wmu makes each read-modify-write of an 'l' key whole: the tick's
	// last-seen write and PRIVACY's flags write would otherwise undo one
	// another.
	wmu sync.Mutex
	// testHookRead, when set, runs in the tick between reading a user's
	// privacy flags and writing its last-seen time.
	testHookRead atomic.Pointer[func()]

	stop chan struct{}
	done chan struct{}
}

// sentPresence is the last PRESENCE a watcher was sent about a user.
type sentPresence struct {
	state    codec.PresenceState
	lastSeen uint64
}

// maxSubscriptions bounds one connection's subscriptions.
const maxSubscriptions = 4096

func newPresence(s *Server, interval time.Duration) *presence {
	p := &presence{s: s, interval: interval, watchers: map[uint64]map[*Conn]sentPresence{},
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

// tick persists last-seen times and tells each dirty user's watchers its
// current state, unless that is what they were last sent.
func (p *presence) tick() {
	defer p.ticks.Add(1)
	p.mu.Lock()
	dirty, seen := p.dirty, p.seen
	p.dirty, p.seen = map[uint64]struct{}{}, map[uint64]uint64{}
	p.mu.Unlock()
	if len(seen) > 0 {
		p.wmu.Lock()
		b := p.s.db.NewBatch()
		for u, at := range seen {
			_, priv := p.read(u)
			if h := p.testHookRead.Load(); h != nil {
				(*h)()
			}
			b.Set(lastSeenKey(u), lastSeenValue(at, priv), nil)
		}
		// Not Sync: a crash may lose the last few seconds of last-seen
		// times, never a message; the next Sync commit flushes these.
		if err := b.Commit(pebble.NoSync); err != nil {
			p.s.log.Error("presence: write last seen", zap.Error(err))
		}
		p.wmu.Unlock()
		b.Close()
	}
	if len(dirty) == 0 {
		return
	}
	fb := p.s.batch()
	for u := range dirty {
		p.mu.Lock()
		if w := p.watchers[u]; len(w) > 0 {
			now := p.current(u)
			frame := now.frame(u)
			for c, last := range w {
				if last != now && c.Write(frame) {
					fb.Add(c)
				}
				w[c] = now
			}
		}
		p.mu.Unlock()
	}
	p.s.flush(fb)
}

// current returns user's presence as watchers should see it now.
func (p *presence) current(user uint64) sentPresence {
	last, priv := p.read(user)
	_, online := p.s.sessions.Lookup(user)
	switch {
	case priv&byte(codec.PrivacyHideLastSeen) != 0:
		return sentPresence{state: codec.PresenceHidden}
	case online:
		return sentPresence{state: codec.PresenceOnline}
	}
	return sentPresence{state: codec.PresenceOffline, lastSeen: last}
}

func (sp sentPresence) frame(user uint64) []byte {
	return (&codec.Presence{User: user, State: sp.state, LastSeen: sp.lastSeen}).Append(nil)
}

// subscribe adds c as a watcher of users and queues one PRESENCE for each
// at once. The session's dmu is held.
func (p *presence) subscribe(c *Conn, users []uint64) (added []uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, u := range users {
		w := p.watchers[u]
		if w == nil {
			w = map[*Conn]sentPresence{}
			p.watchers[u] = w
		}
		if _, dup := w[c]; !dup {
			added = append(added, u)
		}
		now := p.current(u)
		w[c] = now
		c.Write(now.frame(u))
	}
	return added
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

// setPrivacy stores user's flags durably. It writes with Sync: call it off
// the event loop.
func (p *presence) setPrivacy(user uint64, flags byte) error {
	p.wmu.Lock()
	last, _ := p.read(user)
	err := p.s.db.Set(lastSeenKey(user), lastSeenValue(last, flags), pebble.NoSync)
	p.wmu.Unlock()
	if err == nil {
		// Syncing the log makes the write above durable, without holding
		// wmu (which the tick needs) across the fsync.
		err = p.s.db.LogData(nil, pebble.Sync)
	}
	if err != nil {
		return fmt.Errorf("presence: store privacy of %d: %w", user, err)
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
		var users []uint64
		for i := 0; i < f.Users.Len(); i++ {
			// Ids that are no account are ignored: no PRESENCE, no slot.
			if u := f.Users.At(i); s.accounts.Exists(u) {
				users = append(users, u)
			}
		}
		st.dmu.Lock()
		if len(st.subs)+len(users) > maxSubscriptions {
			st.dmu.Unlock()
			s.errorTo(c, codec.CodeTooManyTargets, 0, nil,
				fmt.Sprintf("one connection may watch at most %d users", maxSubscriptions))
			return nil
		}
		st.subs = append(st.subs, s.presence.subscribe(c, users)...)
		st.dmu.Unlock()
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
		if !f.Flags.Valid() {
			s.errorTo(c, codec.CodeInvalidFlags, 0, nil, "PRIVACY: unused flag bits set")
			return nil
		}
		user := st.user.Load()
		job := func() {
			if err := s.presence.setPrivacy(user, byte(f.Flags)); err != nil {
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
