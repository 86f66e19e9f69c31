package server

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/account"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// fakeClock is a settable Config.clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// leave closes c and waits until the server ended its session.
func leave(t *testing.T, s *Server, c interface{ Close() error }, user uint64) {
	t.Helper()
	c.Close()
	waitFor(t, func() bool {
		_, on := s.sessions.Lookup(user)
		return !on && s.seenInFlight.Load() == 0
	})
}

// TestSessionSweep: the background sweep deletes a session past its idle
// expiry that nobody touches (its token is then unknown, not merely
// expired), counts it in chatd_sessions_swept_total, and keeps a live
// session; RESUME with the swept token fails as with an expired one.
func TestSessionSweep(t *testing.T) {
	cfg := testConfig(t)
	clock := &fakeClock{t: time.Now()}
	cfg.clock = clock.now
	cfg.SessionSweep = 20 * time.Millisecond
	cfg.SessionSweepBatch = 4
	cfg.SessionSweepPause = time.Millisecond
	s := startServer(t, cfg)

	// The connections stay open: a close records the session's last use
	// at the fake clock's time then, which the test would have to wait
	// for. Open, they touch nothing (touchSession counts real time).
	alice := register(t, s, "alice")
	aliceTok := alice.Welcome.Token
	clock.add(20 * 24 * time.Hour)
	bob := register(t, s, "bob")
	bobTok := bob.Welcome.Token
	clock.add(15 * 24 * time.Hour) // alice idle 35 days, bob 15 (expiry 30)

	waitFor(t, func() bool {
		_, err := s.accounts.Check(aliceTok)
		return errors.Is(err, account.ErrInvalidToken) && !errors.Is(err, account.ErrTokenExpired)
	})
	if n := s.counters.sessionsSwept.Load(); n != 1 {
		t.Fatalf("chatd_sessions_swept_total %d, want 1", n)
	}
	if _, err := s.accounts.Check(bobTok); err != nil {
		t.Fatalf("the live session: %v", err)
	}
	_, err := resumeWith(t, s, aliceTok)
	if codeOf(err) != codec.CodeInvalidToken {
		t.Fatalf("RESUME with a swept token: %v, want ERROR %d as for an expired one", err, codec.CodeInvalidToken)
	}
	again, err := resumeWith(t, s, bobTok)
	if err != nil {
		t.Fatalf("RESUME of the live session: %v", err)
	}
	// Several more passes ran, and bob's session is still listed.
	passes := s.counters.sweepPasses.Load()
	waitFor(t, func() bool { return s.counters.sweepPasses.Load() >= passes+3 })
	if list := listSessions(t, again); len(list) != 1 {
		t.Fatalf("bob's sessions after the sweeps: %+v", list)
	}
}

// TestSessionSweepYields: a pass over many expired sessions goes in steps
// of at most the batch, pausing between them, and a RESUME during a
// pause is served.
func TestSessionSweepYields(t *testing.T) {
	cfg := testConfig(t)
	clock := &fakeClock{t: time.Now()}
	cfg.clock = clock.now
	cfg.SessionSweep = -1 // the test runs the pass itself
	cfg.SessionSweepBatch = 16
	s := startServer(t, cfg)

	const expired = 120
	for i := range expired {
		if _, err := s.accounts.Register([]byte(fmt.Sprintf("old%d", i)), []byte("password-old"), "192.0.2.1:1"); err != nil {
			t.Fatal(err)
		}
	}
	clock.add(31 * 24 * time.Hour)
	carol := register(t, s, "carol")
	carolTok := carol.Welcome.Token
	leave(t, s, carol, carol.Welcome.User)

	pauses, last := 0, uint64(0)
	swept, err := s.sweepPass(func() bool {
		pauses++
		n := s.counters.sessionsSwept.Load()
		if n-last > uint64(cfg.SessionSweepBatch) {
			t.Errorf("one step deleted %d sessions, more than its %d records", n-last, cfg.SessionSweepBatch)
		}
		last = n
		if pauses == 1 { // the store is free between steps
			c, err := resumeWith(t, s, carolTok)
			if err != nil {
				t.Errorf("RESUME during a sweep's pause: %v", err)
				return true
			}
			carolTok = c.Welcome.Token
			c.Close()
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if swept != expired {
		t.Fatalf("the pass swept %d sessions, want %d", swept, expired)
	}
	// 120 session records at least, 16 a step: 8 steps, 7 pauses.
	if pauses < expired/cfg.SessionSweepBatch {
		t.Fatalf("%d pauses in a pass over %d sessions in steps of %d", pauses, expired, cfg.SessionSweepBatch)
	}
	if s.counters.sweepPasses.Load() != 1 {
		t.Fatalf("%d passes counted, want 1", s.counters.sweepPasses.Load())
	}
	if _, err := s.accounts.Check(carolTok); err != nil {
		t.Fatalf("carol's live session: %v", err)
	}
}

// TestSweepLogIsRateLimited: passes that swept something log one line
// per sweepLogEvery, with the sessions of the passes in between; passes
// that swept nothing log nothing; a failure is logged as a warning.
func TestSweepLogIsRateLimited(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	log := zap.New(core)
	var l sweepLog
	t0 := time.Unix(1_000_000, 0)
	l.note(log, t0, 0, nil)
	if n := logs.Len(); n != 0 {
		t.Fatalf("%d lines for a pass that swept nothing", n)
	}
	l.note(log, t0, 5, nil)
	for i := 1; i <= 10; i++ {
		l.note(log, t0.Add(time.Duration(i)*time.Minute/2), 2, nil)
	}
	lines := logs.TakeAll()
	if len(lines) != 1 || lines[0].ContextMap()["sessions"] != int64(5) {
		t.Fatalf("within one interval: %v", lines)
	}
	l.note(log, t0.Add(sweepLogEvery), 1, errors.New("disk on fire"))
	lines = logs.TakeAll()
	if len(lines) != 2 || lines[0].Level != zap.WarnLevel || lines[1].ContextMap()["sessions"] != int64(21) ||
		lines[1].ContextMap()["passes"] != int64(11) {
		t.Fatalf("the next interval: %v", lines)
	}
}
