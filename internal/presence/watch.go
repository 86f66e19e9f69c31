package presence

// Subscribe adds w as a watcher of users and queues one PRESENCE for each
// on w at once; the caller flushes w. It returns the users w did not
// watch before, which the caller remembers to Forget them later. The
// caller may hold its own lock on w's state (see the package doc's lock
// order).
func (p *Tracker[W]) Subscribe(w W, users []uint64) (added []uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, u := range users {
		ws := p.watchers[u]
		if ws == nil {
			ws = map[W]sent{}
			p.watchers[u] = ws
			if p.remote(u) {
				p.unheard[u] = struct{}{}
				p.cfg.Watch(u, true)
			}
		}
		if _, dup := ws[w]; !dup {
			added = append(added, u)
		}
		now := p.seenBy(u, p.current(u), w)
		if _, known := p.heard[u]; known || !p.remote(u) {
			ws[w] = now
			w.Write(now.frame(u))
		} else {
			ws[w] = unsent // the home has not answered yet: its update goes out when it does
		}

	}
	return added
}

// Forget stops w watching users: on UNSUBSCRIBE, and with every user it
// watched when it closes.
func (p *Tracker[W]) Forget(w W, users []uint64) {
	p.mu.Lock()
	for _, u := range users {
		if ws := p.watchers[u]; ws != nil {
			delete(ws, w)
			if len(ws) == 0 {
				delete(p.watchers, u)
				if p.remote(u) {
					delete(p.heard, u)
					delete(p.unheard, u)
					delete(p.hides, u)
					p.cfg.Watch(u, false)
				}
			}
		}
	}
	p.mu.Unlock()
}
