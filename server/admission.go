package server

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatd/chatd/codec"
	"go.uber.org/zap"
)

// admission decides, for each accepted socket, whether the server takes
// it. Past the connection capacity, above the memory watermark, or beyond
// the accept rate, the new connection gets GOAWAY with a retry delay and is
// closed; the server accepts again as soon as it is back under. Clients
// add random jitter to the delay (PROTOCOL.md), so a herd spreads out
// instead of returning at once. Memory is sampled in the background so
// that the accept path reads one atomic.
type admission struct {
	s          *Server
	maxConns   int
	memLimit   uint64
	watermark  uint64 // bytes of RSS above which new connections are refused
	retryAfter time.Duration

	overMem  atomic.Bool
	stopping atomic.Bool

	mu     sync.Mutex // guards the accept-rate bucket (accepts come from one poller)
	rate   float64
	burst  float64
	tokens float64
	last   time.Time

	stop chan struct{}
	done chan struct{}
}

func newAdmission(s *Server, cfg Config) *admission {
	a := &admission{s: s, maxConns: cfg.MaxConns, memLimit: cfg.MemoryLimit, retryAfter: cfg.RetryAfter,
		rate: float64(cfg.AcceptRate), stop: make(chan struct{}), done: make(chan struct{})}
	a.burst = max(a.rate/10, 100)
	a.tokens, a.last = a.burst, time.Now()
	a.watermark = uint64(float64(a.memLimit) * cfg.MemoryWatermark)
	go a.sample()
	return a
}

// admit is the conn.Admitter.
func (a *admission) admit() (bool, []byte) {
	var reason codec.GoawayReason
	switch {
	case a.stopping.Load():
		reason = codec.GoawayShutdown
	case a.s.conns.Len() >= a.maxConns:
		reason = codec.GoawayCapacity
		a.s.counters.rejectCapacity.Add(1)
	case a.overMem.Load():
		reason = codec.GoawayOverloaded
		a.s.counters.rejectMemory.Add(1)
	case !a.take():
		reason = codec.GoawayOverloaded
		a.s.counters.rejectRate.Add(1)
	default:
		return true, nil
	}
	return false, a.goaway(reason)
}

func (a *admission) goaway(reason codec.GoawayReason) []byte {
	return (&codec.Goaway{RetryAfter: uint32(a.retryAfter / time.Millisecond), Reason: reason}).Append(nil)
}

// take spends one token of the accept-rate bucket.
func (a *admission) take() bool {
	if a.rate <= 0 {
		return true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	a.tokens = min(a.burst, a.tokens+now.Sub(a.last).Seconds()*a.rate)
	a.last = now
	if a.tokens < 1 {
		return false
	}
	a.tokens--
	return true
}

// notReady says why the server would refuse a new client now ("" if it
// would not): what /readyz reports to a load balancer.
func (a *admission) notReady() string {
	switch {
	case a.stopping.Load():
		return "shutting down"
	case a.s.conns.Len() >= a.maxConns:
		return "at connection capacity"
	case a.overMem.Load():
		return "memory above watermark"
	case a.s.space.Full():
		// Clients are still let in (to read and acknowledge, which frees
		// space), but a probe should know that new messages fail.
		return "storage full: new messages refused"
	}
	return ""
}

func (a *admission) sample() {
	defer close(a.done)
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	logged := false
	for {
		select {
		case <-a.stop:
			return
		case <-t.C:
		}
		over := a.watermark > 0 && readRSS() > a.watermark
		a.overMem.Store(over)
		if over != logged {
			a.s.log.Warn("memory watermark", zap.Bool("above", over), zap.Uint64("rss", readRSS()), zap.Uint64("watermark", a.watermark))
			logged = over
		}
	}
}

func (a *admission) close() {
	close(a.stop)
	<-a.done
}

// detectMemory returns the memory this process may use: the cgroup limit
// when one is set, else the machine's RAM (0 if neither is readable).
func detectMemory() uint64 {
	if b, err := os.ReadFile("/sys/fs/cgroup/memory.max"); err == nil {
		if v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil {
			return v
		}
	}
	return hostMemory()
}
