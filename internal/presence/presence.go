package presence

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/zap"
)

// Watcher is a connection that watches users. Write queues one encoded
// frame and reports whether it was the first since the last Flush, which
// the tick then calls once per watcher after queueing all its updates.
// The server's *conn.Conn is one.
type Watcher interface {
	comparable
	Write(frame []byte) (first bool)
	Flush()
}

// Config is what a Tracker needs from its owner.
type Config struct {
	// Interval is the least time between two updates a watcher gets about
	// one user.
	Interval time.Duration
	// Online reports whether user has a session now.
	Online func(user uint64) bool
	// Logger receives write failures of last-seen times.
	Logger *zap.Logger
	// Deleted, when set, reports that user's account is being deleted or
	// was: no last-seen time is stored for it any more (Delete).
	Deleted func(user uint64) bool

	// In a cluster (remote.go); all nil on a single node. Remote reports
	// that user is homed on another node. Watch asks user's home for
	// updates (on) or stops asking, and Relay sends a node the updates
	// about users it watches; both are called under the tracker's lock
	// and must not block.
	Remote func(user uint64) bool
	Watch  func(user uint64, on bool)
	Relay  func(node string, updates []Update)
}

// Tracker tracks who watches whom and tells watchers of changes.
type Tracker[W Watcher] struct {
	// Static after New.
	db       *pebble.DB
	cfg      Config
	interval time.Duration
	online   func(user uint64) bool
	log      *zap.Logger
	stop     chan struct{}
	done     chan struct{}

	ticks atomic.Uint64 // completed ticks, for tests

	// hiding, set by HideFrom before use, says from whom users hide their
	// presence (the server: the users they blocked).
	hiding Hiding[W]

	// Guarded by mu.
	mu       sync.Mutex
	watchers map[uint64]map[W]sent // watched user -> its watchers
	dirty    map[uint64]struct{}
	seen     map[uint64]uint64          // last seen to write (unix ms), by user
	heard    map[uint64]sent            // users homed elsewhere: the state their home last relayed
	unheard  map[uint64]struct{}        // users homed elsewhere watched here whose home has not answered yet
	hides    map[uint64][]uint64        // users homed elsewhere: whom their home last said they hide from
	nodes    map[uint64]map[string]sent // at a home: the other nodes watching each user
	runs     map[string]int64           // at a home: each watching node's latest run

	// wmu makes each read-modify-write of an 'l' key whole: the tick's
	// last-seen write and SetPrivacy's flags write would otherwise undo
	// one another.
	wmu sync.Mutex
	// testHookRead, when set, runs in the tick between reading a user's
	// privacy flags and writing its last-seen time.
	testHookRead atomic.Pointer[func()]
}

// sent is the last PRESENCE a watcher was sent about a user; for a node
// watching it, hidden is also a hash of the users the update said the
// user hides from, so that a change of those is relayed too.
type sent struct {
	state    codec.PresenceState
	lastSeen uint64
	hidden   uint64
}

// New starts a tracker over db, whose 'l' keys it owns. Close stops it.
func New[W Watcher](db *pebble.DB, cfg Config) *Tracker[W] {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	p := &Tracker[W]{db: db, cfg: cfg, interval: cfg.Interval, online: cfg.Online, log: cfg.Logger,
		stop: make(chan struct{}), done: make(chan struct{}),
		watchers: map[uint64]map[W]sent{}, dirty: map[uint64]struct{}{}, seen: map[uint64]uint64{},
		heard: map[uint64]sent{}, unheard: map[uint64]struct{}{}, hides: map[uint64][]uint64{}, nodes: map[uint64]map[string]sent{}, runs: map[string]int64{}}
	go p.run()
	return p
}

// Hiding says from whom users hide their presence, whatever their
// settings. The tracker calls its functions with its lock held: they
// must not block nor call the tracker.
type Hiding[W Watcher] struct {
	// Hides says that user, homed here, hides from watcher w.
	Hides func(user uint64, w W) bool
	// List returns the users that user, homed here, hides from, sorted
	// (nil: none), relayed with user's state to the nodes watching it.
	List func(user uint64) []uint64
	// Viewer is w's user, looked up in the list a home relayed for a
	// user homed elsewhere.
	Viewer func(w W) uint64
}

// HideFrom makes watchers a user hides from see it as hidden. Call it
// once, before the tracker is used; after a change of what h answers for
// user, Changed(user, 0) sends the affected watchers, here and (through
// the relay) on other nodes, the state they may now see.
func (p *Tracker[W]) HideFrom(h Hiding[W]) { p.hiding = h }

// seenBy is now as w may see it.
func (p *Tracker[W]) seenBy(user uint64, now sent, w W) sent {
	if now.state == codec.PresenceHidden {
		return now
	}
	var hidden bool
	if p.remote(user) {
		_, hidden = slices.BinarySearch(p.hides[user], p.viewer(w))
	} else {
		hidden = p.hiding.Hides != nil && p.hiding.Hides(user, w)
	}
	if hidden {
		return sent{state: codec.PresenceHidden}
	}
	return now
}

func (p *Tracker[W]) viewer(w W) uint64 {
	if p.hiding.Viewer == nil {
		return 0
	}
	return p.hiding.Viewer(w)
}

// Changed marks user's presence as changed; offlineAt, when not 0, is the
// time (unix ms) the user went offline, to be stored as last seen. It
// never blocks: the event loop calls it.
func (p *Tracker[W]) Changed(user uint64, offlineAt uint64) {
	p.mu.Lock()
	p.dirty[user] = struct{}{}
	if offlineAt != 0 && !p.remote(user) { // a user homed elsewhere: its home keeps its last seen
		p.seen[user] = offlineAt
	}
	p.mu.Unlock()
}

// Close runs a last tick, so that pending last-seen times are written,
// and stops the tracker. Call it before closing the database.
func (p *Tracker[W]) Close() {
	close(p.stop)
	<-p.done
}

// Ticks counts the ticks completed so far: a change made before Ticks
// returned n has been sent and stored once Ticks reaches n+2.
func (p *Tracker[W]) Ticks() uint64 { return p.ticks.Load() }

func (p *Tracker[W]) run() {
	defer close(p.done)
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			p.Tick()
			return
		case <-t.C:
			p.Tick()
		}
	}
}

// Tick persists last-seen times and tells each dirty user's watchers its
// current state, unless that is what they were last sent. The tracker's
// goroutine calls it every interval; tests with a long interval call it
// themselves.
func (p *Tracker[W]) Tick() {
	defer p.ticks.Add(1)
	p.mu.Lock()
	dirty, seen := p.dirty, p.seen
	p.dirty, p.seen = map[uint64]struct{}{}, map[uint64]uint64{}
	p.mu.Unlock()
	if len(seen) > 0 {
		p.writeLastSeen(seen)
	}
	var flush []W
	var relay map[string][]Update
	for u := range dirty {
		p.mu.Lock()
		w, ns := p.watchers[u], p.nodes[u]
		if len(w) > 0 || len(ns) > 0 {
			now := p.current(u)
			frame := now.frame(u)
			for c, last := range w {
				seen, f := p.seenBy(u, now, c), frame
				if seen != now {
					f = seen.frame(u)
				}
				if last != seen && c.Write(f) {
					flush = append(flush, c)
				}
				w[c] = seen
			}
			var hidden []uint64
			if len(ns) > 0 && p.hiding.List != nil {
				hidden = p.hiding.List(u)
			}
			nowN := now
			nowN.hidden = hashUsers(hidden)
			for node, last := range ns {
				if last != nowN {
					if relay == nil {
						relay = map[string][]Update{}
					}
					relay[node] = append(relay[node], Update{User: u, State: now.state, LastSeen: now.lastSeen, HiddenFrom: hidden})
				}
				ns[node] = nowN
			}
		}
		p.mu.Unlock()
	}
	for _, c := range flush {
		c.Flush()
	}
	for node, updates := range relay {
		p.cfg.Relay(node, updates)
	}
}

// current returns user's presence as watchers should see it now.
func (p *Tracker[W]) current(user uint64) sent {
	if p.remote(user) {
		return p.heard[user] // the zero state until the home has answered
	}
	last, priv := p.Read(user)
	switch {
	case priv&codec.PrivacyHideLastSeen != 0:
		return sent{state: codec.PresenceHidden}
	case p.online(user):
		return sent{state: codec.PresenceOnline}
	}
	return sent{state: codec.PresenceOffline, lastSeen: last}
}

func (sp sent) frame(user uint64) []byte {
	return (&codec.Presence{User: user, State: sp.state, LastSeen: sp.lastSeen}).Append(nil)
}
