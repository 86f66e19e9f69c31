package server

import (
	"time"

	"go.uber.org/zap"
)

// The session sweep. A session past -session-idle is refused when its
// token comes back, and deleted then (account.Store.Resume); one whose
// device never comes back would keep its record and token hashes on disk
// for ever. Every SessionSweep the sweeper walks the session records of
// the accounts homed here (on a cluster each node sweeps the shards it
// owns, s.local, so no two nodes delete the same user's sessions and a
// shard being moved is left alone) and deletes the expired ones.
//
// A pass goes in steps of SessionSweepBatch records with a
// SessionSweepPause between them, a cursor carrying it across: a step
// holds no lock of the store, and a user's lock only for one deletion,
// so logins and RESUMEs go on through a pass over millions of sessions.
// Close stops it at its next step; what a pass left is the next one's.

// sweepLogEvery spaces the sweeper's log lines: a pass that deleted
// something logs at most once per interval (the counts of the passes in
// between are added to the next line), as do its errors.
const sweepLogEvery = 10 * time.Minute

// startSweep starts the sweeper (unless SessionSweep is negative).
func (s *Server) startSweep() {
	if s.cfg.SessionSweep < 0 {
		return
	}
	s.sweeps.start(func() {
		var log sweepLog
		t := time.NewTimer(s.cfg.SessionSweep)
		defer t.Stop()
		for {
			select {
			case <-s.closing:
				return
			case <-t.C:
			}
			n, err := s.sweepPass(s.sweepPause)
			log.note(s.log, time.Now(), n, err)
			t.Reset(s.cfg.SessionSweep)
		}
	})
}

// sweepPass walks every session record once and returns how many
// sessions it deleted. Between two steps it calls pause, which reports
// false to stop the pass (the server is closing).
func (s *Server) sweepPass(pause func() bool) (swept int, err error) {
	var cursor []byte
	for {
		next, n, err := s.accounts.SweepExpired(cursor, s.cfg.SessionSweepBatch, s.local)
		swept += n
		s.counters.sessionsSwept.Add(uint64(n))
		if err != nil || next == nil {
			if err == nil {
				s.counters.sweepPasses.Add(1)
			}
			return swept, err
		}
		cursor = next
		if !pause() {
			return swept, nil
		}
	}
}

// sweepPause waits SessionSweepPause, or reports false if the server
// closes first.
func (s *Server) sweepPause() bool {
	t := time.NewTimer(s.cfg.SessionSweepPause)
	defer t.Stop()
	select {
	case <-s.closing:
		return false
	case <-t.C:
		return true
	}
}

// sweepLog is the sweeper's rate-limited log; only its goroutine uses it.
type sweepLog struct {
	last    time.Time // of the last line
	pending int       // sessions swept since
	passes  int       // passes since
	errs    int       // failed passes since
	lastErr error
}

func (l *sweepLog) note(log *zap.Logger, now time.Time, swept int, err error) {
	l.pending += swept
	l.passes++
	if err != nil {
		l.errs++
		l.lastErr = err
	}
	if (l.pending == 0 && l.errs == 0) || now.Sub(l.last) < sweepLogEvery {
		return
	}
	if l.errs > 0 {
		log.Warn("session sweep failed", zap.Int("failed_passes", l.errs), zap.Int("passes", l.passes), zap.Error(l.lastErr))
	}
	if l.pending > 0 {
		log.Info("expired sessions swept", zap.Int("sessions", l.pending), zap.Int("passes", l.passes))
	}
	*l = sweepLog{last: now}
}
