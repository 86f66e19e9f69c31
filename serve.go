package main

import (
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/chatd/chatd/internal/cluster"
	"github.com/chatd/chatd/internal/conn"
	"github.com/chatd/chatd/internal/server"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// serve wires flags -> Config -> Validate -> New -> Listen -> Serve, then
// waits for SIGINT or SIGTERM and closes the server.
func serve(args []string) error {
	var cfg server.Config
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.StringVar(&cfg.Addr, "addr", "127.0.0.1:7420", "TCP address to listen on; use 0.0.0.0:7420 to accept other hosts")
	fs.StringVar(&cfg.WSAddr, "ws-addr", "", "also accept WebSocket clients (browsers) on this address (empty: off); see PROTOCOL.md, WebSocket binding")
	fs.StringVar(&cfg.WSPath, "ws-path", "/chatd", "request path the WebSocket listener upgrades")
	var wsOrigins string
	fs.StringVar(&wsOrigins, "ws-origins", "", "comma-separated browser origins allowed on the WebSocket listener, e.g. https://chat.example.com, or * for any (empty: only pages from the host the request names)")
	fs.StringVar(&cfg.DataDir, "data", "chatd-data", "folder for the embedded database (accounts, inboxes); created if missing")
	fs.StringVar(&cfg.NoiseKey, "noise-key", "", "file of the server's static Noise key, created if missing (empty: DATA/noise.key); a cluster's nodes share one")
	fs.BoolVar(&cfg.Plaintext, "plaintext", false, "also accept unencrypted connections (local benchmarks only; Noise is always on)")
	fs.IntVar(&cfg.MaxBody, "max-body", 65000, "largest message body in bytes (at most 65000)")
	fs.IntVar(&cfg.Window, "window", 256, "deliveries a client may have unacknowledged before the server waits")
	fs.IntVar(&cfg.MaxRemoteSends, "max-remote-sends", 512, "SENDs of one connection that may wait for other cluster nodes' answers; beyond, ERROR 27")
	fs.DurationVar(&cfg.Keepalive, "keepalive", 3*time.Minute, "close connections silent for this long; clients ping at a third of it")
	fs.DurationVar(&cfg.ReceiptDelay, "receipt-delay", 50*time.Millisecond, "longest a receipt for an online sender waits to share a write with the next frame to it (negative: none)")
	fs.DurationVar(&cfg.AuthTimeout, "auth-timeout", 10*time.Second, "close connections that have not logged in within this time")
	fs.DurationVar(&cfg.ReadTimeout, "read-timeout", 10*time.Second, "close connections that stall in the middle of a frame this long")
	fs.DurationVar(&cfg.WriteTimeout, "write-timeout", 10*time.Second, "close connections whose socket accepts nothing for this long")
	sizeVar(fs, &cfg.MaxOutbound, "max-outbound", 4<<20, "bytes queued for one client before it is closed as a slow consumer")
	sizeVar(fs, &cfg.CacheSize, "cache", 64<<20, "Pebble block cache (bytes, or with KiB, MiB, GiB)")
	fs.DurationVar(&cfg.WALSyncInterval, "wal-sync-interval", 500*time.Microsecond, "least time between two fsyncs of the write-ahead log: a SENT waits at most this much beyond its fsync")
	sizeVar(fs, &cfg.MemTableSize, "memtable", 64<<20, "Pebble memtable size in bytes; larger lets more messages be delivered and deleted before reaching disk")
	sizeVar(fs, &cfg.StorageReserve, "storage-reserve", 0, "free disk bytes below which new messages get ERROR 28 (0: the larger of 4 memtables and 1% of the volume), plus room for Pebble's largest compaction")
	sizeVar(fs, &cfg.StorageHysteresis, "storage-hysteresis", 0, "free bytes above that mark before messages are accepted again (0: the ballast plus two memtables)")
	sizeVar(fs, &cfg.Ballast, "ballast", 0, "bytes of the EMERGENCY_BALLAST file released when the disk fills (0: 1% of the volume, at most 1 GiB; -1: none)")
	fs.IntVar(&cfg.Lanes, "lanes", 0, "inbox commit lanes (0: 4 per core)")
	fs.DurationVar(&cfg.TTL, "ttl", 30*24*time.Hour, "delete inbox entries not acknowledged within this time")
	fs.IntVar(&cfg.MaxGroup, "max-group", 256, "most members in a group")
	fs.DurationVar(&cfg.NameHold, "name-hold", 30*24*time.Hour, "how long a deleted account's name stays taken before it may be registered again")
	fs.IntVar(&cfg.MaxList, "max-list", 4096, "most users in one user's block list or contacts")
	fs.IntVar(&cfg.Quota, "inbox-quota", 10000, "most entries one user's inbox may hold; senders to a full inbox get ERROR 31")
	sizeVar(fs, &cfg.QuotaBytes, "inbox-quota-bytes", 64<<20, "most bytes one user's inbox may hold (entry values: header, ids, body); a message past it gets ERROR 75")
	admin := fs.String("admin", "127.0.0.1:7421", "admin listener for /stats, /healthz and /debug/pprof (empty: off); keep it off public interfaces")
	fs.Func("argon2-memory", "KiB of memory per password hash (default 19456, OWASP's argon2id baseline); lower only for benchmarks", func(v string) error {
		n, err := strconv.ParseUint(v, 10, 32)
		cfg.Hashing.MemoryKiB = uint32(n)
		return err
	})
	fs.Func("argon2-time", "argon2id passes per password hash (default 2)", func(v string) error {
		n, err := strconv.ParseUint(v, 10, 32)
		cfg.Hashing.Time = uint32(n)
		return err
	})
	fs.DurationVar(&cfg.SessionIdle, "session-idle", 30*24*time.Hour, "end a device's session (its token) after this long unused; RESUME then gets ERROR 25")
	fs.DurationVar(&cfg.SessionSweep, "session-sweep", time.Hour, "how often expired sessions nobody touched are deleted, with their tokens (negative: never)")
	fs.IntVar(&cfg.SessionSweepBatch, "session-sweep-batch", 512, "session records one step of the sweep examines before it pauses")
	fs.DurationVar(&cfg.SessionSweepPause, "session-sweep-pause", 50*time.Millisecond, "pause between two steps of the session sweep, for logins and RESUMEs")
	fs.DurationVar(&cfg.TokenGrace, "token-grace", 2*time.Minute, "how long a token RESUME replaced still resumes, for a client that lost the WELCOME with its successor")
	fs.IntVar(&cfg.MaxConns, "max-conns", 0, "connection capacity; past it new connections get GOAWAY (0: the open-files limit less 300)")
	sizeVar(fs, &cfg.MemoryLimit, "memory-limit", 0, "bytes of memory the server may use (0: the cgroup limit, else the machine's RAM)")
	fs.Float64Var(&cfg.MemoryWatermark, "memory-watermark", 0.8, "fraction of the memory limit above which new connections get GOAWAY")
	fs.IntVar(&cfg.AcceptRate, "accept-rate", 30000, "new connections per second before the rest get GOAWAY (protects against thundering herds)")
	fs.DurationVar(&cfg.RetryAfter, "retry-after", 2*time.Second, "delay GOAWAY asks clients to wait (they add random jitter)")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", 10*time.Second, "longest a graceful shutdown waits for connections to close")
	fs.IntVar(&cfg.LoginsPerSource, "logins-per-source", 30, "password attempts per source address per minute (-1: no limit)")
	fs.IntVar(&cfg.FailedLoginsPerUser, "failed-logins-per-user", 10, "failed password attempts per user name per minute (-1: no limit)")
	fs.IntVar(&cfg.MaxFrameRate, "max-frame-rate", 1000, "frames one connection may send per second before it is closed (-1: no limit)")
	sizeVar(fs, &cfg.MaxByteRate, "max-byte-rate", 4<<20, "bytes one connection may send per second before it is closed (-1: no limit)")
	fs.DurationVar(&cfg.PresenceInterval, "presence-interval", time.Second, "watchers hear of a user's presence at most once per interval")
	fs.IntVar(&cfg.Prekeys.MaxEC, "prekeys-max-ec", 1000, "one-time EC prekeys kept per device; an upload past it gets ERROR 85")
	fs.IntVar(&cfg.Prekeys.MaxKEM, "prekeys-max-kem", 100, "one-time ML-KEM prekeys kept per device; an upload past it gets ERROR 85")
	fs.IntVar(&cfg.Prekeys.LowEC, "prekeys-low-ec", 10, "one-time EC prekeys below which the owner gets KEYS_LOW")
	fs.IntVar(&cfg.Prekeys.LowKEM, "prekeys-low-kem", 3, "one-time ML-KEM prekeys below which the owner gets KEYS_LOW")
	fs.IntVar(&cfg.Prekeys.MaxFetchers, "prekeys-max-fetchers", 1000, "fetchers remembered per user, to tell of an identity key change")
	fs.IntVar(&cfg.KeyFetches, "key-fetches", 10, "KEYS_FETCH per (requester, target) per key-fetch-window; past it ERROR 83 (-1: no limit)")
	fs.DurationVar(&cfg.KeyFetchWindow, "key-fetch-window", 10*time.Minute, "the window of key-fetches")
	pushOn := fs.Bool("push", true, "send Web Push notifications to subscribed users who are offline when something is stored for them")
	fs.StringVar(&cfg.Push.KeyFile, "vapid-key", "", "file of the server's VAPID key (P-256) that signs pushes, created if missing (empty: DATA/vapid.key); a cluster's nodes share one")
	fs.StringVar(&cfg.Push.Subject, "push-subject", "mailto:postmaster@localhost", "VAPID subject: a mailto: or https: URL where push services can reach you (set it: some refuse the default)")
	var pushHosts string
	fs.StringVar(&pushHosts, "push-allow-hosts", "", "comma-separated push service hosts an endpoint may name, *.domain for any host under it (empty: any public https host)")
	fs.BoolVar(&cfg.Push.AllowHTTPLoopback, "push-allow-http-loopback", false, "also accept http:// endpoints on loopback addresses (a local test receiver)")
	fs.DurationVar(&cfg.Push.Window, "push-window", 2*time.Second, "coalesce a user's pushes: one per window, with a count")
	var cc cluster.Config
	var routes string
	fs.StringVar(&cc.Node, "node", "", "this node's name in a cluster (empty: a single node, and nothing of NATS starts); unique and stable")
	fs.StringVar(&cc.Listen, "cluster-listen", "127.0.0.1:7422", "address other nodes' routes dial (with -node)")
	fs.StringVar(&routes, "cluster-routes", "", "comma-separated route addresses of the cluster's nodes, this one's included (with -node)")
	fs.StringVar(&cc.Secret, "cluster-secret", "", "shared secret every node presents on its routes, 16 bytes or more (with -node; prefer CHATD_CLUSTER_SECRET)")
	fs.IntVar(&cc.Size, "cluster-size", 0, "nodes the cluster is built for: directory replicas are min(3, size) and the first shard map waits for size live nodes (0: the number of routes)")
	fs.StringVar(&cc.Client, "cluster-client", "", "also serve NATS clients (the nats CLI) on this address, with the secret as token (empty: none)")
	fs.DurationVar(&cc.ReadyTimeout, "cluster-wait", 5*time.Minute, "how long start-up waits for the cluster's JetStream (a quorum of nodes)")
	fs.String("config", "", "optional config file of \"name = value\" lines with these flag names (env: CHATD_CONFIG)")
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	devLog := fs.Bool("log-console", false, "human-readable logs instead of JSON")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: chatd serve [flags]\n\nEvery flag also reads from the environment as CHATD_<NAME> (for example\n"+
			"CHATD_MAX_OUTBOUND for -max-outbound) and from -config; the command line wins over the\n"+
			"environment, which wins over the file.\n\n")
		fs.PrintDefaults()
	}
	from, err := parseSettings(fs, args, osEnviron)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}

	for _, o := range strings.Split(wsOrigins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			cfg.WSOrigins = append(cfg.WSOrigins, o)
		}
	}
	cfg.Push.Disabled = !*pushOn
	for _, h := range strings.Split(pushHosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			cfg.Push.AllowHosts = append(cfg.Push.AllowHosts, h)
		}
	}
	if cc.Node != "" {
		for _, r := range strings.Split(routes, ",") {
			if r = strings.TrimSpace(r); r != "" {
				cc.Routes = append(cc.Routes, r)
			}
		}
		cfg.Cluster = &cc
	}

	// Everything chatd writes (the database, its WAL of queued message
	// bodies, password hashes, the Noise key) is for its own user alone.
	syscall.Umask(0o077)

	log, err := newLogger(*level, *devLog)
	if err != nil {
		return err
	}
	defer log.Sync()
	cfg.Logger = log
	conn.SetLogOutput(zap.NewStdLog(log.Named("netpoll")).Writer())

	soft, hard, err := conn.FileLimit()
	if err != nil {
		return err
	}
	log.Info("open-files limit", zap.Uint64("soft", soft), zap.Uint64("hard", hard))

	if cfg.Cluster != nil {
		log.Info("joining the cluster; waiting for a quorum of nodes", zap.String("node", cc.Node),
			zap.String("listen", cc.Listen), zap.Strings("routes", cc.Routes))
	}
	s, err := server.New(cfg)
	if err != nil {
		return explainSettings(err, from)
	}
	if err := s.Listen(); err != nil {
		s.Close()
		return err
	}
	log.Info("chatd listening", zap.Stringer("addr", s.Addr()), zap.String("data", cfg.DataDir),
		zap.Bool("plaintext", cfg.Plaintext), zap.Int("netpoll_buffer", conn.BufferSize),
		zap.Int("max_connections", s.MaxConns()), // what admission enforces, -max-conns or the file limit less 300
		zap.String("public_key", hex.EncodeToString(s.PublicKey())))
	fmt.Printf("chatd public key: %x\n", s.PublicKey())
	if a := s.WSAddr(); a != nil {
		log.Info("websocket listening", zap.Stringer("addr", a), zap.String("path", cfg.WSPath),
			zap.Strings("origins", cfg.WSOrigins))
	}
	if k := s.Keys(); k.Next != nil {
		// A rotation is under way: new users may pin the next key already.
		fmt.Printf("chatd next public key: %x (rotation under way since %s; chatd key retire ends it)\n",
			k.Next.Public, k.NextFrom.UTC().Format(time.RFC3339))
	}

	if *admin != "" {
		addr, stop, err := s.Admin(*admin)
		if err != nil {
			s.Close()
			return err
		}
		defer stop()
		log.Info("admin listening", zap.Stringer("addr", addr))
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- s.Serve() }()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case got := <-sig:
		log.Info("stopping", zap.Stringer("signal", got))
	case err := <-serveErr:
		if err != nil {
			s.Close()
			return err
		}
	}
	if err := s.Close(); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	log.Info("stopped")
	return nil
}

func newLogger(level string, console bool) (*zap.Logger, error) {
	var lvl zapcore.Level
	if err := lvl.Set(level); err != nil {
		return nil, fmt.Errorf("log level: %w", err)
	}
	cfg := zap.NewProductionConfig()
	if console {
		cfg = zap.NewDevelopmentConfig()
	}
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	return cfg.Build()
}
