package push

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Urgency is a push's RFC 8030 Urgency: the highest of the entries its
// window saw.
type Urgency uint8

const (
	UrgencyLow    Urgency = 1 // receipts: the device may wait for power and Wi-Fi
	UrgencyNormal Urgency = 2
	UrgencyHigh   Urgency = 3 // messages
)

func (u Urgency) header() string {
	switch u {
	case UrgencyLow:
		return "low"
	case UrgencyHigh:
		return "high"
	}
	return "normal"
}

// Config configures the push service. A zero field means its default.
type Config struct {
	// Disabled turns pushes off: no key is made, PUSH_SUBSCRIBE is refused.
	Disabled bool
	// KeyFile holds the VAPID private key, created on first start. Required.
	KeyFile string
	// Subject is the VAPID "sub" claim: a mailto: or https: URL the push
	// service's operator can reach the server's operator at. Default
	// "mailto:postmaster@localhost" (some push services refuse that one).
	Subject string
	// Policy bounds the endpoints the server posts to.
	Policy
	// Window coalesces a user's pushes: one per window, with a count.
	// Default 2 s.
	Window time.Duration
	// Workers is how many requests run at once; Queue how many jobs may
	// wait for a worker. Defaults 8 and 4096.
	Workers, Queue int
	// Timeout bounds one request to a push service. Default 10 s.
	Timeout time.Duration
	// Attempts is how often a job is tried before it fails (429, 5xx and
	// network errors are retried). Default 5.
	Attempts int
	// Backoff is the first retry's delay, doubled for each later one, with
	// jitter; MaxBackoff caps it and any Retry-After. Defaults 1 s and 5 min.
	Backoff, MaxBackoff time.Duration
	// TTL is how long a push service keeps a push for an unreachable
	// device. Default and cap 28 days, what the big push services keep.
	TTL time.Duration

	// Online reports whether user has a live session (then no push).
	Online func(user uint64) bool
	// Pending reports whether user's inbox holds entries: a due push
	// reloaded at start is sent only then.
	Pending func(user uint64) bool
	// Transport replaces the HTTP transport (tests). Nil: one that dials
	// only addresses Policy allows.
	Transport http.RoundTripper
	Logger    *zap.Logger
}

// maxTTL is what FCM, Mozilla and Apple keep a push for at most.
const maxTTL = 28 * 24 * time.Hour

func (c *Config) setDefaults() {
	if c.Subject == "" {
		c.Subject = "mailto:postmaster@localhost"
	}
	if c.Window == 0 {
		c.Window = 2 * time.Second
	}
	if c.Workers == 0 {
		c.Workers = 8
	}
	if c.Queue == 0 {
		c.Queue = 4096
	}
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
	if c.Attempts == 0 {
		c.Attempts = 5
	}
	if c.Backoff == 0 {
		c.Backoff = time.Second
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 5 * time.Minute
	}
	if c.TTL <= 0 || c.TTL > maxTTL {
		c.TTL = maxTTL
	}
	if c.Online == nil {
		c.Online = func(uint64) bool { return false }
	}
	if c.Pending == nil {
		c.Pending = func(uint64) bool { return true }
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
}

// Service sends the pushes. Its methods are safe for concurrent use; a
// nil *Service (push disabled) takes Due and does nothing.
type Service struct {
	cfg    Config
	key    VAPID
	store  *Store
	client *http.Client
	log    *zap.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	stats  stats

	// The coalescer's inputs, guarded by mu: Due opens windows, workers
	// report pushes that ended.
	mu      sync.Mutex
	windows map[uint64]*window // open windows, by user
	fresh   []uint64           // users whose window opened since the coalescer last looked
	ended   []uint64           // users whose last push ended (sent, failed or dropped)
	wake    chan struct{}

	jobs      chan *job
	closeOnce sync.Once
}

// window is one user's open coalescing window.
type window struct {
	count    uint32
	urgency  Urgency
	opened   time.Time // the first entry's store: push latency starts here
	deadline time.Time
}

// Open loads the VAPID key (creating it) and prepares the service; Due
// may be called at once, and Start starts sending. With cfg.Disabled it
// returns nil, nil.
func Open(store *Store, cfg Config) (*Service, error) {
	if cfg.Disabled {
		return nil, nil
	}
	cfg.setDefaults()
	if cfg.KeyFile == "" {
		return nil, fmt.Errorf("push: no VAPID key file configured")
	}
	key, created, err := LoadOrCreateVAPID(cfg.KeyFile)
	if err != nil {
		return nil, err
	}
	if created {
		cfg.Logger.Info("created the server's VAPID key", zap.String("path", cfg.KeyFile), zap.String("public", key.PublicBase64()))
	}
	s := &Service{cfg: cfg, key: key, store: store, log: cfg.Logger,
		windows: map[uint64]*window{}, wake: make(chan struct{}, 1), jobs: make(chan *job, cfg.Queue)}
	s.stats.init()
	s.client = newClient(&cfg)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Start reloads the pushes a previous run left due and starts the
// coalescer and the workers. The server calls it once the inbox is open:
// cfg.Pending reads the inbox.
func (s *Service) Start() error {
	if s == nil {
		return nil
	}
	if err := s.reload(); err != nil {
		return err
	}
	s.wg.Add(1 + s.cfg.Workers)
	go s.coalesce()
	for range s.cfg.Workers {
		go s.work()
	}
	return nil
}

// reload turns the due-set a previous run left into open windows, for
// users who still have subscriptions and entries waiting.
func (s *Service) reload() error {
	due, err := s.store.loadDue()
	if err != nil {
		return err
	}
	now := time.Now()
	for u, d := range due {
		if _, err := s.openDue(u, d, true, now); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.fresh) > 0 {
		s.log.Info("pushes left due by the last run", zap.Int("users", len(s.fresh)))
	}
	return nil
}

// Store is the subscription store.
func (s *Service) Store() *Store { return s.store }

// Key is the VAPID key pair.
func (s *Service) Key() VAPID { return s.key }

// Subject is the VAPID sub claim.
func (s *Service) Subject() string { return s.cfg.Subject }

// Policy is the endpoint policy in force.
func (s *Service) Policy() *Policy { return &s.cfg.Policy }

// Due records that an entry was stored for user, who had no live session.
// It runs on the inbox lane: it never blocks on I/O.
func (s *Service) Due(user uint64, u Urgency) {
	if s == nil || !s.store.Has(user) || s.cfg.Online(user) {
		return
	}
	s.mu.Lock()
	if w := s.windows[user]; w != nil {
		w.count++
		w.urgency = max(w.urgency, u)
		s.mu.Unlock()
		return
	}
	now := time.Now()
	s.windows[user] = &window{count: 1, urgency: u, opened: now, deadline: now.Add(s.cfg.Window)}
	s.fresh = append(s.fresh, user)
	s.mu.Unlock()
	s.stats.opened.Add(1)
	s.signal()
}

func (s *Service) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Close stops the coalescer and the workers; requests under way are
// cancelled. What was due and not done stays in the due-set for the next
// start. Call it before the database closes.
func (s *Service) Close() {
	if s == nil {
		return
	}
	s.closeOnce.Do(func() {
		s.cancel()
		s.wg.Wait()
		s.client.CloseIdleConnections()
	})
}
