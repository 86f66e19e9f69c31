// Package admission decides, for each accepted socket, whether the server
// takes it. Past the connection capacity, above the memory watermark, or
// beyond the accept rate, the new connection gets GOAWAY with a retry
// delay and is closed; the server accepts again as soon as it is back
// under. Clients add random jitter to the delay (PROTOCOL.md), so a herd
// spreads out instead of returning at once.
//
// Admit runs on the poller for every accepted socket, so it is cheap:
// memory is sampled in the background and the accept path reads one
// atomic; the capacity check is the caller's connection count; the rate
// check is a token bucket under one short lock. The same reasons, read
// without counting, answer /readyz (NotReady).
package admission

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/proc"
	"go.uber.org/zap"
)

// Config is what Control needs from the server. Conns is required.
type Config struct {
	// MaxConns is the connection capacity: at Conns() >= MaxConns new
	// connections are refused.
	MaxConns int
	// Watermark is the resident memory, in bytes, above which new
	// connections are refused; 0 turns the check off.
	Watermark uint64
	// AcceptRate bounds new connections per second; 0 turns it off. The
	// bucket holds a tenth of a second's worth, at least 100.
	AcceptRate int
	// RetryAfter is the delay GOAWAY asks for.
	RetryAfter time.Duration
	// Conns returns the number of open connections.
	Conns func() int
	// RSS reads resident memory; default proc.RSS (tests replace it).
	RSS func() uint64
	// Sample is how often RSS is read from half the watermark up; default
	// 250 ms. Below half, four times less often (sampleWait).
	Sample time.Duration
	// Logger hears when memory crosses the watermark, each way once.
	Logger *zap.Logger
}

// Rejects counts connections refused, by reason.
type Rejects struct {
	Capacity, Memory, Rate uint64
}

// Control is the admission check. Its fields are grouped by owner.
type Control struct {
	// Static after New.
	cfg   Config
	rate  float64
	burst float64
	stop  chan struct{}
	done  chan struct{} // closed when the sampler returns

	// Atomics: written by the sampler (overMem), Stop (stopping) and Admit
	// (the counters); read anywhere.
	overMem                  atomic.Bool
	stopping                 atomic.Bool
	capacity, memory, byRate atomic.Uint64

	// Guarded by mu: the accept-rate bucket. Accepts come from one
	// poller, so the lock is uncontended; it is a leaf.
	mu     sync.Mutex
	tokens float64
	last   time.Time
}

// New starts the memory sampler (if there is a watermark); Close stops it.
func New(cfg Config) *Control {
	if cfg.RSS == nil {
		cfg.RSS = proc.RSS
	}
	if cfg.Sample <= 0 {
		cfg.Sample = 250 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	c := &Control{cfg: cfg, rate: float64(cfg.AcceptRate), stop: make(chan struct{}), done: make(chan struct{})}
	c.burst = max(c.rate/10, 100)
	c.tokens, c.last = c.burst, time.Now()
	if cfg.Watermark == 0 {
		close(c.done) // nothing to watch: no sampler
	} else {
		go c.sample()
	}
	return c
}

// Admit has the signature of conn.Admitter: it says whether to take a new
// connection and, if not, the GOAWAY to send it.
func (c *Control) Admit() (bool, []byte) {
	var reason codec.GoawayReason
	switch {
	case c.stopping.Load():
		reason = codec.GoawayShutdown
	case c.cfg.Conns() >= c.cfg.MaxConns:
		reason = codec.GoawayCapacity
		c.capacity.Add(1)
	case c.overMem.Load():
		reason = codec.GoawayOverloaded
		c.memory.Add(1)
	case !c.take():
		reason = codec.GoawayOverloaded
		c.byRate.Add(1)
	default:
		return true, nil
	}
	return false, c.Goaway(reason)
}

// Goaway encodes a GOAWAY frame with this reason and the configured delay.
func (c *Control) Goaway(reason codec.GoawayReason) []byte {
	return (&codec.Goaway{RetryAfter: uint32(c.cfg.RetryAfter / time.Millisecond), Reason: reason}).Append(nil)
}

// Stop refuses every connection from now on, with GOAWAY shutdown: the
// server is draining.
func (c *Control) Stop() { c.stopping.Store(true) }

// NotReady says why a new connection would be refused now ("" if it
// would not): what /readyz reports to a load balancer. It counts nothing
// and leaves the rate bucket alone.
func (c *Control) NotReady() string {
	switch {
	case c.stopping.Load():
		return "shutting down"
	case c.cfg.Conns() >= c.cfg.MaxConns:
		return "at connection capacity"
	case c.overMem.Load():
		return "memory above watermark"
	}
	return ""
}

// Rejected returns the refusals so far.
func (c *Control) Rejected() Rejects {
	return Rejects{Capacity: c.capacity.Load(), Memory: c.memory.Load(), Rate: c.byRate.Load()}
}

// take spends one token of the accept-rate bucket.
func (c *Control) take() bool {
	if c.rate <= 0 {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	c.tokens = min(c.burst, c.tokens+now.Sub(c.last).Seconds()*c.rate)
	c.last = now
	if c.tokens < 1 {
		return false
	}
	c.tokens--
	return true
}

func (c *Control) sample() {
	defer close(c.done)
	t := time.NewTimer(c.cfg.Sample)
	defer t.Stop()
	logged := false
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		rss := c.cfg.RSS()
		over := rss > c.cfg.Watermark
		c.overMem.Store(over)
		if over != logged {
			c.cfg.Logger.Warn("memory watermark", zap.Bool("above", over), zap.Uint64("rss", rss), zap.Uint64("watermark", c.cfg.Watermark))
			logged = over
		}
		t.Reset(c.sampleWait(rss))
	}
}

// sampleWait is how long the sampler waits after reading rss: Sample from
// half the watermark up, four times that below (1 s by default). No
// server grows by half its watermark (0.4 of its memory limit) within a
// second, and each reading skipped is a wake-up an idle server saves.
func (c *Control) sampleWait(rss uint64) time.Duration {
	if rss < c.cfg.Watermark/2 {
		return 4 * c.cfg.Sample
	}
	return c.cfg.Sample
}

// Close stops the memory sampler and waits for it.
func (c *Control) Close() {
	close(c.stop)
	<-c.done
}
