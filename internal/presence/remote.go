package presence

import (
	"slices"

	"github.com/chatd/chatd/codec"
)

// Presence across nodes. A user's presence is decided at its home, which
// keeps its last seen and privacy and knows whether it has a session on
// any node (Config.Online). Another node whose clients watch the user
// asks the home for updates (Config.Watch, called when the user's first
// local watcher comes and its last goes); the home's tick sends each node
// that asked the user's state when it changes (Config.Relay), coalesced
// like a watcher's; the node keeps the last state it heard (Update) and
// tells its watchers. Nothing crosses nodes for a user nobody elsewhere
// watches.

// Update is a user's presence, as a home relays it, with the users it
// hides from (sorted; Hiding.List), whom the watching node shows it as
// hidden, as its home would.
type Update struct {
	User       uint64
	State      codec.PresenceState
	LastSeen   uint64
	HiddenFrom []uint64
}

// hashUsers is FNV-1a over users: a relay goes again when it changes.
func hashUsers(users []uint64) uint64 {
	if len(users) == 0 {
		return 0
	}
	h := uint64(14695981039346656037)
	for _, u := range users {
		for i := range 8 {
			h ^= (u >> (8 * i)) & 0xff
			h *= 1099511628211
		}
	}
	return h | 1
}

// unsent is what a watcher was "last sent" about a user homed elsewhere
// before the home's first update: no state equals it.
var unsent = sent{state: 0xff}

// remote reports whether user is homed on another node.
func (p *Tracker[W]) remote(user uint64) bool {
	return p.cfg.Remote != nil && p.cfg.Remote(user)
}

// Heard takes updates a home relayed about users it keeps: the watchers
// here hear of them at the next tick.
func (p *Tracker[W]) Heard(updates []Update) {
	p.mu.Lock()
	for _, u := range updates {
		if p.watchers[u.User] == nil {
			continue // nobody here watches any more
		}
		p.heard[u.User] = sent{state: u.State, lastSeen: u.LastSeen}
		delete(p.unheard, u.User)
		if len(u.HiddenFrom) > 0 {
			if !slices.IsSorted(u.HiddenFrom) {
				slices.Sort(u.HiddenFrom)
			}
			p.hides[u.User] = u.HiddenFrom
		} else {
			delete(p.hides, u.User)
		}
		p.dirty[u.User] = struct{}{}
	}
	p.mu.Unlock()
}

// WatchFrom records, at the user's home, that node (in its run started
// at run, unix ms) watches user (on) or no longer does. A new watching
// node is sent the user's state at the next tick. The first watch from a
// later run of a node drops every watch of its earlier runs, whose
// clients are gone (their new connections watch again); a node that died
// for good costs only the publishes nobody hears.
func (p *Tracker[W]) WatchFrom(node string, run int64, user uint64, on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch last := p.runs[node]; {
	case run < last:
		return // from a run that is over
	case run > last:
		p.runs[node] = run
		for u, ns := range p.nodes {
			delete(ns, node)
			if len(ns) == 0 {
				delete(p.nodes, u)
			}
		}
	}
	ns := p.nodes[user]
	if !on {
		delete(ns, node)
		if len(ns) == 0 {
			delete(p.nodes, user)
		}
		return
	}
	if ns == nil {
		ns = map[string]sent{}
		p.nodes[user] = ns
	}
	ns[node] = unsent
	p.dirty[user] = struct{}{}
}

// Unheard returns the users homed elsewhere that local connections watch
// and whose home has sent nothing yet, nor said there is no such account:
// the watch or the home's first update was lost (both cross nodes at most
// once), and the caller asks the home again. The home answers a watch it
// already has by sending the state again.
func (p *Tracker[W]) Unheard() []uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]uint64, 0, len(p.unheard))
	for u := range p.unheard {
		out = append(out, u)
	}
	return out
}

// NoSuchUser records that user's home answered a watch with "no such
// account": its watchers hear nothing, as on one node, and Unheard no
// longer names it while anyone here watches it.
func (p *Tracker[W]) NoSuchUser(user uint64) {
	p.mu.Lock()
	delete(p.unheard, user)
	p.mu.Unlock()
}

// Watched returns the users homed elsewhere that local connections watch,
// for asking a restarted home again.
func (p *Tracker[W]) Watched() []uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []uint64
	for u := range p.watchers {
		if p.remote(u) {
			out = append(out, u)
		}
	}
	return out
}
