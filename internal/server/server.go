package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/account"
	"github.com/chatd/chatd/internal/admission"
	"github.com/chatd/chatd/internal/block"
	"github.com/chatd/chatd/internal/conn"
	"github.com/chatd/chatd/internal/group"
	"github.com/chatd/chatd/internal/offline"
	"github.com/chatd/chatd/internal/prekey"
	"github.com/chatd/chatd/internal/presence"
	"github.com/chatd/chatd/internal/push"
	"github.com/chatd/chatd/internal/router"
	"github.com/chatd/chatd/internal/secure"
	"github.com/chatd/chatd/internal/store"
	"github.com/chatd/chatd/web"
	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/zap"
)

// Server is a running chatd. Its fields are grouped by who owns them.
// Nothing in Server belongs to one event-loop turn or one connection: that
// state lives in each connection's session (session.go).
type Server struct {
	// Static after New. Each component is safe for concurrent use and
	// guards its own state (lock order: doc.go).
	cfg      Config
	log      *zap.Logger
	keys     *secure.Keyring // static Noise keys, kept in the data folder (keys.go)
	keyPath  string
	keyMu    sync.Mutex // serializes key changes: the operator's and those other nodes send (keysync.go)
	keySyncs background // key sets other nodes sent, being adopted
	db       *pebble.DB
	space    *store.Space
	accounts *account.Store
	blocks   *block.Store // who blocked whom, contacts, group-add settings
	inbox    *offline.Inbox[*Conn]
	groups   *group.Store
	prekeys  *prekey.Store
	fetches  *fetchLimiter
	presence *presence.Tracker[*Conn]
	subs     *push.Store   // Web Push subscriptions
	pushes   *push.Service // nil when push is off
	commits  *commits      // durable requests, off the event loop

	seenEvery    time.Duration  // touchSession's period
	seenInFlight atomic.Int64   // sessionSeen requests under way
	seenWG       sync.WaitGroup // and Close waits for them
	seenMu       sync.RWMutex   // guards seenClosed against seenWG.Add
	seenClosed   bool

	sessions *router.Router[*Conn] // the session table and delivery: push, drain, ack
	conns    *conn.Server[session]
	admit    *admission.Control // accept-time GOAWAY: capacity, memory, accept rate
	logins   *loginLimiter
	cl       *clustering   // nil on a single node
	rm       *remote       // messages across nodes; nil on a single node
	fo       *fanouts      // group fan-out to other nodes; nil on a single node
	closing  chan struct{} // closed when Close starts
	baseCtx  context.Context
	cancel   context.CancelFunc // cancels baseCtx when Close starts
	deletes  background         // account deletions under way (delete.go)
	sweeps   background         // the session sweeper (sweep.go)
	deleting sync.Map           // user id -> true while its deletion runs

	// Pools, safe for concurrent use; an item belongs to whoever took it.
	batches sync.Pool // *conn.Batch[session], one per producer turn

	// Atomics, added to from any goroutine; read by metrics and Process.
	counters counters
	holds    holds         // per-sender order across SENDs refused for now (holds.go)
	lat      latencies     // histograms
	fails    loginFailures // failed authentications, by reason

	// Guarded by closeOnce: set once by the first Close.
	closeOnce sync.Once
	closeErr  error
}

// New opens the data folder and prepares the server; Listen and Serve
// start it.
func New(cfg Config) (*Server, error) {
	explicitMax := cfg.MaxConns != 0
	cfg.setDefaults()
	if !explicitMax {
		if soft, _, err := conn.FileLimit(); err == nil && soft > 400 {
			cfg.MaxConns = int(soft - 300)
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, closing: make(chan struct{}), lat: newLatencies(),
		seenEvery: min(cfg.SessionIdle/8, 24*time.Hour)}
	s.baseCtx, s.cancel = context.WithCancel(context.Background())
	s.sessions = router.New(router.Config[*Conn]{
		Window: cfg.Window, WindowBytes: cfg.WindowBytes, Logger: cfg.Logger,
		Session:   func(c *Conn) *router.Session { return &c.State.route },
		User:      func(c *Conn) uint64 { return c.State.user.Load() },
		Delivered: s.lat.delivered,
	})
	s.counters.pushed, s.counters.backlogged = &s.sessions.Counters.Pushed, &s.sessions.Counters.Backlogged
	s.counters.inflightPeak = &s.sessions.Counters.InflightPeak
	s.logins = newLoginLimiter(cfg.LoginsPerSource, cfg.FailedLoginsPerUser)
	s.batches.New = func() any { return new(conn.Batch[session]) }

	memtable := cfg.MemTableSize
	if memtable == 0 {
		memtable = 64 << 20 // store's default
	}
	var err error
	if s.space, err = store.OpenSpace(cfg.DataDir, store.SpaceOptions{
		Reserve: cfg.StorageReserve, Hysteresis: cfg.StorageHysteresis, Ballast: cfg.Ballast, MemTableSize: int64(memtable),
		Interval: cfg.StorageInterval, Logger: cfg.Logger,
	}); err != nil {
		return nil, err
	}
	db, err := store.Open(cfg.DataDir, store.Options{
		CacheSize: cfg.CacheSize, MemTableSize: cfg.MemTableSize, SyncInterval: cfg.WALSyncInterval, Space: s.space, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	s.db = db
	if s.accounts, err = account.New(db, account.Config{Hashing: cfg.Hashing, NameHold: cfg.NameHold, IdleExpiry: cfg.SessionIdle, Grace: cfg.TokenGrace, Now: cfg.clock}); err != nil {
		db.Close()
		return nil, err
	}
	if s.blocks, err = block.Open(db, cfg.MaxList); err != nil {
		db.Close()
		return nil, err
	}
	if s.groups, err = group.Open(db, cfg.MaxGroup); err != nil {
		db.Close()
		return nil, err
	}
	if s.prekeys, err = prekey.New(db, cfg.Prekeys); err != nil {
		db.Close()
		return nil, err
	}
	s.fetches = newFetchLimiter(cfg.KeyFetches, cfg.KeyFetchWindow)
	pcfg := presence.Config{Interval: cfg.PresenceInterval, Online: s.online, Logger: cfg.Logger, Deleted: s.accounts.Deleted}
	if cfg.Cluster != nil {
		pcfg.Remote = func(u uint64) bool { return !s.local(u) }
		pcfg.Watch, pcfg.Relay = s.watchHome, s.relayPresence
	}
	if err := s.openPush(); err != nil {
		db.Close()
		return nil, err
	}
	s.presence = presence.New[*Conn](db, pcfg) // before the cluster's handlers: they tell it of sessions
	s.commits = newCommits()                   // and use these
	// A user's presence is hidden from the users it blocked, on every
	// node: its home relays the list with its state.
	s.presence.HideFrom(presence.Hiding[*Conn]{
		Hides:  func(user uint64, c *Conn) bool { return s.blocks.Blocks(user, c.State.user.Load()) },
		List:   func(user uint64) []uint64 { return s.blocks.List(user, codec.ListBlocked) },
		Viewer: func(c *Conn) uint64 { return c.State.user.Load() },
	})
	ocfg := offline.Config{Lanes: cfg.Lanes, TTL: cfg.TTL, Quota: cfg.Quota, QuotaBytes: cfg.QuotaBytes, Logger: cfg.Logger, SyncFault: cfg.syncFault,
		Synced: s.lat.sync.Observe, Gone: s.accounts.Deleted, LiveWait: cfg.LiveWait}
	if cfg.Cluster != nil {
		// Before the inbox opens: its first expiry sweep may owe receipts
		// to users homed on other nodes.
		cc := *cfg.Cluster
		if cc.Dir == "" {
			cc.Dir = filepath.Join(cfg.DataDir, "nats")
		}
		if cc.Logger == nil {
			cc.Logger = cfg.Logger
		}
		if err := s.startCluster(&cc); err != nil {
			s.commits.close()
			s.presence.Close()
			db.Close()
			return nil, err
		}
		s.rm, s.fo = newRemote(s), newFanouts(s)
		ocfg.Remote = func(user uint64) bool { return !s.local(user) }
		ocfg.Forward = s.forward
		ocfg.FanOut = s.fo.add
	}
	if s.inbox, err = offline.Open[*Conn](db, ocfg, hooks{s}); err != nil {
		s.closeCluster()
		s.commits.close()
		s.presence.Close()
		db.Close()
		return nil, err
	}
	s.sessions.Use(s.inbox)
	if s.cl != nil {
		s.sessions.Use(inboxes{s})
		if err := s.startRemote(); err != nil { // handlers last: they use the inbox
			s.closeCluster()
			s.inbox.Close()
			s.commits.close()
			s.presence.Close()
			db.Close()
			return nil, err
		}
	}
	keyPath := cfg.NoiseKey
	if keyPath == "" {
		keyPath = filepath.Join(cfg.DataDir, "noise.key")
	}
	keys, created, err := secure.LoadKeys(keyPath)
	if err != nil {
		s.closeCluster()
		s.inbox.Close()
		s.commits.close()
		s.presence.Close()
		db.Close()
		return nil, err
	}
	if created {
		s.log.Info("created the server's Noise key", zap.String("path", keyPath))
	}
	s.keys, s.keyPath = secure.NewKeyring(keys), keyPath
	s.conns, err = conn.New[session](conn.Config{
		NoiseKeys:      s.keys,
		MaxOutbound:    cfg.MaxOutbound,
		MaxFrameRate:   cfg.MaxFrameRate,
		MaxByteRate:    cfg.MaxByteRate,
		ReadTimeout:    cfg.ReadTimeout,
		WriteTimeout:   cfg.WriteTimeout,
		Keepalive:      cfg.Keepalive,
		AuthTimeout:    cfg.AuthTimeout,
		LazyDelay:      cfg.ReceiptDelay,
		AllowPlaintext: cfg.Plaintext,
		WebSocket:      conn.WSConfig{Path: cfg.WSPath, Origins: cfg.WSOrigins, Static: web.File},
		Logger:         cfg.Logger,
	}, s)
	if err != nil {
		s.commits.close()
		s.presence.Close()
		s.closeCluster()
		s.inbox.Close()
		db.Close()
		return nil, err
	}
	s.admit = admission.New(admission.Config{
		MaxConns:   cfg.MaxConns,
		Watermark:  uint64(float64(cfg.MemoryLimit) * cfg.MemoryWatermark),
		AcceptRate: cfg.AcceptRate,
		RetryAfter: cfg.RetryAfter,
		Conns:      s.conns.Len,
		Logger:     cfg.Logger,
	})
	s.conns.SetAdmitter(s.admit.Admit)
	s.space.Watch(db)
	if err := s.pushes.Start(); err != nil { // reads the inbox: after it opened
		s.Close()
		return nil, err
	}
	for _, u := range s.accounts.Deleting() { // deletions a stop interrupted
		s.finishDeletion(u)
	}
	s.startSweep()
	return s, nil
}

// Listen binds the configured address, and the WebSocket one if set.
func (s *Server) Listen() error {
	if err := s.conns.Listen(s.cfg.Addr); err != nil {
		return err
	}
	if s.cfg.WSAddr != "" {
		return s.conns.ListenWS(s.cfg.WSAddr)
	}
	return nil
}

// WSAddr is the bound WebSocket address (after Listen), nil without one.
func (s *Server) WSAddr() net.Addr { return s.conns.WSAddr() }

// MaxConns is the connection capacity admission enforces: the configured
// one, or the open-files limit less 300 when none was set.
func (s *Server) MaxConns() int { return s.cfg.MaxConns }

// Addr is the bound address (after Listen).
func (s *Server) Addr() net.Addr { return s.conns.Addr() }

// Serve runs until Close.
func (s *Server) Serve() error { return s.conns.Serve() }

// Close shuts down gracefully: it stops accepting, sends every client
// GOAWAY (reconnect after RetryAfter plus jitter), closes the
// connections, lets every queued inbox write finish and become durable
// (so every SENT already promised holds), flushes the memtable and closes
// the database.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.DrainTimeout)
		defer cancel()
		s.admit.Stop()
		s.conns.StopAccepting()
		bye := s.admit.Goaway(codec.GoawayShutdown)
		s.conns.Each(func(c *Conn) {
			if c.Write(bye) {
				c.Flush()
			}
		})
		close(s.closing)
		s.cancel()
		err := s.conns.Shutdown(ctx)
		s.stopSeen()      // the last sessions' last seen, while the cluster still answers
		s.deletes.close() // they stop at their next step (closing): the next start finishes them
		s.sweeps.close()  // stops at its next step; before the cluster: it asks who is home
		s.keySyncs.close()
		s.closeCluster()  // after the last session's release is queued, before the inbox: no request arrives after
		s.commits.close() // after the last frame, before the inbox: jobs queue group events
		s.admit.Close()
		s.presence.Close()
		s.inbox.Close()
		s.pushes.Close() // after the inbox's last Applied; what is still due stays in the due-set
		s.space.Close()
		if ferr := s.db.Flush(); ferr != nil {
			err = errors.Join(err, fmt.Errorf("server: flush store: %w", ferr))
		}
		if cerr := s.db.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("server: close store: %w", cerr))
		}
		s.closeErr = err
	})
	return s.closeErr
}

// storageFull reports (and counts) a write refused because the disk is
// nearly full: one atomic load while it is not.
func (s *Server) storageFull() bool {
	if !s.space.Full() {
		return false
	}
	s.counters.storageFull.Add(1)
	return true
}

// PublicKey is the server's static Noise key: clients pin it. During a
// key rotation it is the old key, which clients that pinned it still get.
func (s *Server) PublicKey() []byte { return s.keys.Keys().Current.Public }

// Stats is a snapshot of what the server is doing.
type Stats struct {
	Conn     conn.Snapshot
	Sessions int
	Users    uint64
}

// Stats returns current counters.
func (s *Server) Stats() Stats {
	return Stats{Conn: s.conns.Snapshot(), Sessions: s.sessions.Len(), Users: s.accounts.Count()}
}

// counters count per-message events with atomics; never logged per event.
// Accept-time refusals are admission's (admission.Control.Rejected).
type counters struct {
	stored atomic.Uint64  // inbox entries made durable
	pushed *atomic.Uint64 // the router's: inbox entries written to a connection
	sent   atomic.Uint64  // SENT acks (SENT_DELIVERED among them)
	// sentDelivered counts SENT_DELIVERED answers: delivered receipts
	// never made, for senders that asked (OPTIONS).
	sentDelivered atomic.Uint64

	inflightPeak *atomic.Int64 // the router's: most unacknowledged delivery bytes one connection had

	registers, logins, resumes atomic.Uint64
	backlogged                 *atomic.Int64 // the router's: sessions with entries not yet pushed
	busy                       atomic.Uint64
	loginLimited               atomic.Uint64
	storageFull                atomic.Uint64 // requests refused with ERROR 28
	held                       atomic.Uint64 // SENDs refused because an earlier one to the recipient was (holds.go)
	remoteFull                 atomic.Uint64 // SENDs refused with 27: the connection's MaxRemoteSends were waiting
	pushRepairs                atomic.Uint64 // empty pushes a home sent to quiet away sessions (repairPushes)
	staleImports               atomic.Uint64 // shard imports dropped as past their sender's timeout (staleImport)
	sessionsSwept, sweepPasses atomic.Uint64 // the session sweep (sweep.go)

	keys keyCounters
}

// keyCounters count the prekey directory's events (chatd_prekey_events_total).
// A steady flow of last_resort means clients do not refill on KEYS_LOW.
type keyCounters struct {
	uploads, bundles, lastResort, badSignature, invalid, fetchLimited, low, identityChanged atomic.Uint64
}

func (s *Server) batch() *conn.Batch[session] { return s.batches.Get().(*conn.Batch[session]) }

func (s *Server) flush(b *conn.Batch[session]) {
	b.Flush()
	s.batches.Put(b)
}
