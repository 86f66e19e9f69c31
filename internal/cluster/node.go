package cluster

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"github.com/chatd/chatd/internal/latency"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Config names a node and its peers. A zero field means its default;
// Node, Listen, Routes and Dir are required.
type Config struct {
	// Node is this node's name: unique in the cluster and stable across
	// restarts (JetStream derives its raft peer id from it, and the
	// directory and the shard map name nodes by it). Letters, digits, '-'
	// and '_' only: it is also a subject token.
	Node string
	// Listen is the address other nodes' routes dial (host:port). Port 0
	// picks a free one (tests); Addr then reports it.
	Listen string
	// Routes are the route addresses (host:port) of the cluster's nodes,
	// this one's included or not. NATS finds the rest from any one of them.
	Routes []string
	// Size is how many nodes the cluster is built for: the directory keeps
	// min(3, Size) replicas, and the first shard map waits for Size live
	// nodes. Default len(Routes), counting this node once.
	Size int
	// Dir holds NATS's JetStream store. It is locked while the node runs
	// (NATS takes no lock of its own: two servers on one store dir start
	// without a word and corrupt it).
	Dir string
	// Secret authenticates routes: a node that does not present it cannot
	// join, publish or read anything. The same on every node; at least 16
	// bytes.
	Secret string
	// Client, when set, serves NATS clients on that address (the nats
	// CLI, for an operator) with Secret as their token. By default the
	// client port is a random loopback one with a random token that only
	// this process knows (nats-server starts its routes only after a
	// client listener is up, so there is always one).
	Client string
	// Heartbeat is how often the node says it is alive; a node silent for
	// three heartbeats reads as dead. Default 1 s.
	Heartbeat time.Duration
	// ReadyTimeout bounds Start's wait for JetStream (a meta leader): 0.6 s
	// on a fresh cluster, 5-7 s when every node restarts with data (raft
	// elections time out after a random 4-9 s). Default 30 s.
	ReadyTimeout time.Duration
	// OpTimeout bounds one directory or shard-map operation. Default 5 s.
	OpTimeout time.Duration
	// MaxMemory and MaxStore cap JetStream (NATS's defaults are 75% of RAM
	// and up to 1 TB of disk). Defaults 64 MiB and 1 GiB: the directory is
	// about 140 B per session per replica.
	MaxMemory, MaxStore int64
	Logger              *zap.Logger
}

func (c *Config) setDefaults() {
	if c.Size == 0 {
		c.Size = len(c.Routes)
		self := false
		for _, r := range c.Routes {
			self = self || r == c.Listen
		}
		if !self {
			c.Size++
		}
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = time.Second
	}
	if c.ReadyTimeout == 0 {
		c.ReadyTimeout = 30 * time.Second
	}
	if c.OpTimeout == 0 {
		c.OpTimeout = 5 * time.Second
	}
	if c.MaxMemory == 0 {
		c.MaxMemory = 64 << 20
	}
	if c.MaxStore == 0 {
		c.MaxStore = 1 << 30
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
}

// Validate reports the first setting that cannot work.
func (c *Config) Validate() error {
	switch {
	case c.Node == "":
		return errors.New("cluster: a node name is required")
	case !validToken(c.Node):
		return fmt.Errorf("cluster: node name %q: use letters, digits, '-' and '_' only", c.Node)
	case c.Listen == "":
		return errors.New("cluster: a listen address for routes is required")
	case c.Dir == "":
		return errors.New("cluster: a store directory is required")
	case len(c.Secret) < 16:
		return errors.New("cluster: a shared secret of at least 16 bytes is required (routes are authenticated with it)")
	case c.Size < 1:
		return fmt.Errorf("cluster: size %d", c.Size)
	}
	for _, r := range append([]string{c.Listen}, c.Routes...) {
		if _, _, err := net.SplitHostPort(r); err != nil {
			return fmt.Errorf("cluster: route address %q: %w", r, err)
		}
	}
	return nil
}

func validToken(s string) bool {
	for _, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_'
		if !ok {
			return false
		}
	}
	return s != "" && len(s) <= 64
}

// Node is this process's member of the cluster: an embedded nats-server
// (routes, JetStream), one in-process client, and the buckets built on
// them. Its fields are grouped by owner.
type Node struct {
	// Static after Start.
	cfg  Config
	log  *zap.Logger
	ns   *server.Server
	nc   *nats.Conn
	js   jetstream.JetStream
	lock *os.File  // flock on Dir
	run  time.Time // when this run started (heartbeats carry it: see Started)

	dir    jetstream.KeyValue // sessions: user/device -> {node, since}
	nodes  jetstream.KeyValue // heartbeats
	shards jetstream.KeyValue // the shard map

	live   liveness // who has been heard from lately
	shardm shardMap // the cached shard map

	// Guarded by mu.
	mu     sync.Mutex
	onKick func(Kick)
	subs   []*nats.Subscription

	// Counters, read by Status and metrics.
	counters counters
	hops     *latency.Hist // request round trips (hopBounds)
	inflight atomic.Int64  // requests out now (MaxInFlight)
	async    asyncReqs     // Send's requests waiting for answers

	ctx    context.Context // cancelled by Close: background calls return
	cancel context.CancelFunc
	stop   chan struct{} // closed by Close: background loops return
	// endWatch ends the directory watch as a lost consumer would (tests).
	endWatch chan struct{}
	wg       sync.WaitGroup
}

// Start starts the embedded NATS server, joins the cluster, waits for
// JetStream and opens the buckets. It fails if JetStream does not become
// usable within ReadyTimeout.
func Start(cfg Config) (*Node, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: cfg.Logger.Named("cluster"), stop: make(chan struct{}), endWatch: make(chan struct{}),
		hops: latency.New(hopBounds)}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.live.init(3 * cfg.Heartbeat)
	n.shardm.ready = make(chan struct{})
	var err error
	if n.lock, err = lockDir(cfg.Dir); err != nil {
		return nil, err
	}
	if err := n.startServer(); err != nil {
		n.lock.Close()
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.ReadyTimeout)
	defer cancel()
	if err := n.open(ctx); err != nil {
		n.Close()
		return nil, err
	}
	if err := n.startAsync(); err != nil {
		n.Close()
		return nil, err
	}
	n.wg.Add(3)
	n.run = time.Now()
	go n.heartbeat()
	go n.watchNodes()
	go n.watchShards()
	return n, nil
}

// lockDir creates dir and takes an exclusive flock on dir/LOCK for the
// process's life (released by the kernel if it dies).
func lockDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cluster: store dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cluster: store dir lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("cluster: store dir %s is in use by another node: %w", dir, err)
	}
	return f, nil
}

func (n *Node) startServer() error {
	cfg := n.cfg
	host, port, err := splitPort(cfg.Listen)
	if err != nil {
		return err
	}
	var routes []string
	for _, r := range cfg.Routes {
		if r != cfg.Listen {
			routes = append(routes, "nats://"+r)
		}
	}
	token := cfg.Secret
	opts := &server.Options{
		ServerName:         cfg.Node,
		Host:               "127.0.0.1",
		Port:               server.RANDOM_PORT,
		JetStream:          true,
		StoreDir:           cfg.Dir,
		JetStreamMaxMemory: cfg.MaxMemory,
		JetStreamMaxStore:  cfg.MaxStore,
		NoSigs:             true, // chatd owns signals and shuts NATS down itself
		NoLog:              true,
	}
	if cfg.Client != "" {
		if opts.Host, opts.Port, err = splitPort(cfg.Client); err != nil {
			return err
		}
	} else {
		token = rand.Text()
	}
	opts.Authorization = token
	if len(routes) > 0 { // a cluster of one runs JetStream standalone: NATS refuses a cluster without routes
		opts.Cluster = server.ClusterOpts{Name: "chatd", Host: host, Port: port, Username: "chatd", Password: cfg.Secret}
		if port == 0 {
			opts.Cluster.Port = server.RANDOM_PORT
		}
		opts.Routes = server.RoutesFromStr(joinComma(routes))
		for _, u := range opts.Routes {
			u.User = url.UserPassword("chatd", cfg.Secret)
		}
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("cluster: nats server: %w", err)
	}
	ns.SetLoggerV2(natsLogger{n.log.Named("nats").Sugar()}, false, false, false)
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		ns.WaitForShutdown()
		return errors.New("cluster: nats server not ready within 10 s")
	}
	n.ns = ns
	nc, err := nats.Connect("", nats.InProcessServer(ns), nats.Name("chatd-"+cfg.Node), nats.Token(token),
		nats.MaxReconnects(-1), nats.ErrorHandler(n.asyncError),
		// The in-process pipe's handshake has the default 2 s: a node
		// restarted on a starved machine (its JetStream recovering) missed
		// it. Start is bounded by ReadyTimeout anyway.
		nats.Timeout(max(cfg.ReadyTimeout/2, 2*time.Second)),
	)
	if err != nil {
		return fmt.Errorf("cluster: in-process client: %w", err)
	}
	n.nc = nc
	return nil
}

func splitPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("cluster: address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("cluster: address %q: bad port", addr)
	}
	return host, port, nil
}

func joinComma(s []string) string {
	out := ""
	for i, v := range s {
		if i > 0 {
			out += ","
		}
		out += v
	}
	return out
}

// asyncError counts what the client reports off any call: a slow
// consumer means core NATS dropped messages to this node.
func (n *Node) asyncError(_ *nats.Conn, sub *nats.Subscription, err error) {
	n.counters.asyncErrors.Add(1)
	subj := ""
	if sub != nil {
		subj = sub.Subject
	}
	n.log.Warn("nats client error", zap.String("subject", subj), zap.Error(err))
}

// open waits for JetStream and opens (creating if needed) the buckets.
// "Ready for connections" is not "JetStream ready": it polls an API call
// until a meta leader answers.
func (n *Node) open(ctx context.Context) error {
	js, err := jetstream.New(n.nc)
	if err != nil {
		return fmt.Errorf("cluster: jetstream: %w", err)
	}
	n.js = js
	for {
		actx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := js.AccountInfo(actx)
		cancel()
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: JetStream not ready within %s: %w", n.cfg.ReadyTimeout, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	replicas := min(3, n.cfg.Size)
	if n.dir, err = n.bucket(ctx, jetstream.KeyValueConfig{Bucket: bucketSessions, History: 1, Replicas: replicas}); err != nil {
		return err
	}
	if n.nodes, err = n.bucket(ctx, jetstream.KeyValueConfig{Bucket: bucketNodes, History: 1, Replicas: replicas,
		TTL: 10 * n.cfg.Heartbeat}); err != nil {
		return err
	}
	if n.shards, err = n.bucket(ctx, jetstream.KeyValueConfig{Bucket: bucketShards, History: 1, Replicas: replicas}); err != nil {
		return err
	}
	return nil
}

const (
	bucketSessions = "chatd_sessions"
	bucketNodes    = "chatd_nodes"
	bucketShards   = "chatd_shards"
)

// bucket creates or binds a KV bucket, retrying while the cluster elects
// (a stream create can fail while peers join), and turns off direct gets:
// with them an R3 bucket answers reads from followers, and a get right
// after a put came back stale in 5-34% of reads here (notes/cluster.md).
func (n *Node) bucket(ctx context.Context, kcfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	var lastErr error
	for {
		kv, err := n.bucketOnce(ctx, kcfg)
		if err == nil {
			return kv, nil
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("cluster: bucket %s: %w", kcfg.Bucket, lastErr)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (n *Node) bucketOnce(ctx context.Context, kcfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	// One second per attempt, not OpTimeout: while every node creates
	// the same buckets at once, an API request now and then goes
	// unanswered, and a retry is quicker than waiting out a long timeout.
	octx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	kv, err := n.js.KeyValue(octx, kcfg.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = n.js.CreateKeyValue(octx, kcfg)
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = n.js.KeyValue(octx, kcfg.Bucket)
		}
	}
	if err != nil {
		return nil, err
	}
	st, err := n.js.Stream(octx, "KV_"+kcfg.Bucket)
	if err != nil {
		return nil, err
	}
	if sc := st.CachedInfo().Config; sc.AllowDirect {
		sc.AllowDirect = false
		if _, err := n.js.UpdateStream(octx, sc); err != nil {
			return nil, err
		}
		return n.js.KeyValue(octx, kcfg.Bucket) // rebind: the handle chose direct gets when made
	}
	return kv, nil
}

// Name is this node's name.
func (n *Node) Name() string { return n.cfg.Node }

// Run is when this node's run started, as its heartbeats tell the others
// (Started).
func (n *Node) Run() time.Time { return n.run }

// Addr is the address the route listener bound.
func (n *Node) Addr() string {
	if a := n.ns.ClusterAddr(); a != nil {
		return a.String()
	}
	return ""
}

// Close leaves the cluster: it stops the heartbeat (the others read this
// node as dead three heartbeats later), closes the client and shuts the
// NATS server down cleanly, so the next start recovers no stream state.
func (n *Node) Close() error {
	select {
	case <-n.stop:
		return nil
	default:
	}
	close(n.stop)
	n.cancel()
	n.wg.Wait()
	if n.nc != nil {
		// Every request this node makes is synchronous, so there is
		// nothing to drain but what sits in the client's write buffer. (A
		// Drain also waits for subscriptions' consumers, which takes the
		// full timeout when the others have already left.)
		if ferr := n.nc.FlushTimeout(time.Second); ferr != nil && !errors.Is(ferr, nats.ErrConnectionClosed) {
			n.log.Debug("flush at close", zap.Error(ferr))
		}
		n.nc.Close()
	}
	if n.ns != nil {
		n.ns.Shutdown()
		n.ns.WaitForShutdown()
	}
	if n.lock != nil {
		n.lock.Close()
	}
	return nil
}

// natsLogger sends NATS's own log lines to zap: notices at debug (NATS
// is chatty at start) and errors as warnings (most are a peer not up yet,
// retried: what matters to chatd it reports itself).
type natsLogger struct{ s *zap.SugaredLogger }

func (l natsLogger) Noticef(format string, v ...any) { l.s.Debugf(format, v...) }
func (l natsLogger) Warnf(format string, v ...any)   { l.s.Warnf(format, v...) }
func (l natsLogger) Fatalf(format string, v ...any)  { l.s.Errorf(format, v...) }
func (l natsLogger) Errorf(format string, v ...any)  { l.s.Warnf(format, v...) }
func (l natsLogger) Debugf(format string, v ...any)  {}
func (l natsLogger) Tracef(format string, v ...any)  {}
