package push

import (
	"fmt"
	"time"

	"go.uber.org/zap"
)

// coalesce is the one goroutine that closes windows, turns them into jobs
// and keeps the due-set: it alone writes and deletes due keys, so a key
// deleted for a push that ended is never a key a newer window just wrote.
func (s *Service) coalesce() {
	defer s.wg.Done()
	var order []uint64 // open windows' users, by deadline (every window is as long)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		order = append(order, s.takeFresh()...)
		s.clearEnded()
		now := time.Now()
		for len(order) > 0 {
			u := order[0]
			s.mu.Lock()
			w := s.windows[u]
			if w.deadline.After(now) {
				s.mu.Unlock()
				break
			}
			delete(s.windows, u)
			s.mu.Unlock()
			order = order[1:]
			if !s.fire(u, w) {
				s.shutdown() // closing: this window's due key stays as written
				return
			}
		}
		wait := time.Hour
		if len(order) > 0 {
			s.mu.Lock()
			wait = time.Until(s.windows[order[0]].deadline)
			s.mu.Unlock()
		}
		timer.Reset(wait) // Go 1.23 timers: no stale tick survives a Reset
		select {
		case <-s.wake:
		case <-timer.C:
		case <-s.ctx.Done():
			s.shutdown()
			return
		}
	}
}

// takeFresh writes the due keys of the windows opened since the last call
// and returns their users.
func (s *Service) takeFresh() []uint64 {
	s.mu.Lock()
	fresh := s.fresh
	s.fresh = nil
	due := make(map[uint64]dueState, len(fresh))
	for _, u := range fresh {
		w := s.windows[u]
		due[u] = dueState{count: w.count, urgency: w.urgency}
	}
	s.mu.Unlock()
	if len(fresh) > 0 {
		if err := s.store.markDue(fresh, due); err != nil {
			s.log.Warn("push: due-set not written; these pushes do not survive a restart", zap.Error(err))
		}
	}
	return fresh
}

// shutdown leaves the due-set right for the next start: windows still
// open keep their due keys, with their counts; ended pushes lose theirs.
func (s *Service) shutdown() {
	s.takeFresh()
	s.clearEnded()
	s.persistOpen()
}

// persistOpen rewrites the due keys of the windows still open, whose
// counts grew since takeFresh wrote them.
func (s *Service) persistOpen() {
	s.mu.Lock()
	users := make([]uint64, 0, len(s.windows))
	due := make(map[uint64]dueState, len(s.windows))
	for u, w := range s.windows {
		users = append(users, u)
		due[u] = dueState{count: w.count, urgency: w.urgency}
	}
	s.mu.Unlock()
	if err := s.store.markDue(users, due); err != nil {
		s.log.Warn("push: due-set not written at close", zap.Error(err))
	}
}

// clearEnded deletes the due keys of pushes that ended, unless a newer
// window of the same user is open (its key is the same key).
func (s *Service) clearEnded() {
	s.mu.Lock()
	ended := s.ended
	s.ended = nil
	var clear []uint64
	for _, u := range ended {
		if s.windows[u] == nil {
			clear = append(clear, u)
		}
	}
	s.mu.Unlock()
	for _, u := range clear {
		if err := s.store.clearDue(u); err != nil {
			s.log.Warn("push: due key not cleared", zap.Uint64("user", u), zap.Error(err))
		}
	}
}

// fire queues one job per subscription of u, unless u came online while
// the window was open. It waits for room in the queue (the coalescer is
// off the message path); false when the service is closing.
func (s *Service) fire(u uint64, w *window) bool {
	if s.cfg.Online(u) {
		s.stats.online.Add(1)
		s.endPush(u)
		return true
	}
	subs, err := s.store.List(u)
	if err != nil || len(subs) == 0 {
		if err != nil {
			s.log.Error("push: list subscriptions", zap.Uint64("user", u), zap.Error(err))
		}
		s.endPush(u)
		return true
	}
	p := &pushed{user: u}
	p.remaining.Store(int32(len(subs)))
	payload := []byte(fmt.Sprintf(`{"kind":"sync","count":%d}`, w.count))
	for _, sub := range subs {
		j := &job{push: p, sub: sub, payload: payload, urgency: w.urgency, opened: w.opened}
		select {
		case s.jobs <- j:
		case <-s.ctx.Done():
			return false
		}
	}
	return true
}

// endPush reports that u's push ended: the coalescer clears its due key.
func (s *Service) endPush(u uint64) {
	s.mu.Lock()
	s.ended = append(s.ended, u)
	s.mu.Unlock()
	s.signal()
}
