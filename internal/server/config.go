package server

import (
	"errors"
	"fmt"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/account"
	"github.com/chatd/chatd/internal/cluster"
	"github.com/chatd/chatd/internal/prekey"
	"github.com/chatd/chatd/internal/proc"
	"github.com/chatd/chatd/internal/push"
	"go.uber.org/zap"
)

// Config is everything `chatd serve` can set. A zero field means its
// default; Validate reports values that cannot work.
type Config struct {
	// Addr is the TCP listen address. Default "127.0.0.1:7420".
	Addr string
	// WSAddr, if set, is a second listen address for the WebSocket
	// binding (PROTOCOL.md): browsers, and clients behind proxies that pass
	// only HTTP. Off by default.
	WSAddr string
	// WSPath is the request path upgraded to WebSocket. Default "/chatd".
	WSPath string
	// WSOrigins lists the browser origins allowed on the WebSocket
	// listener ("https://chat.example.com", or "*" for any). Requests
	// without Origin (not from a browser) are always allowed; with the
	// list empty, only pages from the host the request names (Host) are.
	WSOrigins []string
	// DataDir holds the Pebble database. Default "chatd-data".
	DataDir string
	// Plaintext accepts unencrypted connections (local benchmarks only).
	Plaintext bool
	// NoiseKey is the file of the server's static Noise key, created if
	// missing. Default DataDir/noise.key. The nodes of a cluster share one
	// key (copy the file), so that a client that pinned it may connect to
	// any node.
	NoiseKey string

	// MaxBody is the largest message body accepted. Default codec.MaxBody.
	MaxBody int
	// Window is how many inbox entries may be delivered but unacknowledged
	// per connection. Default 256.
	Window int
	// MaxRemoteSends bounds the SENDs of one connection waiting for
	// another node's answer (a recipient or group homed there), in flight
	// or held behind others; beyond it a SEND gets ERROR 27 and holds its
	// recipient (holds.go), so a client that ignores the send window
	// cannot queue without limit at a slow home. Default 512 (twice the
	// Go client's window, which resends after errors may exceed).
	MaxRemoteSends int
	// WindowBytes bounds the frames delivered but unacknowledged per
	// connection, in bytes, so that a window of large messages never
	// fills the outbound queue (MaxOutbound) and gets its client closed as
	// a slow consumer. At most half of MaxOutbound, which leaves the rest
	// for replies, receipts and presence. Default: half of MaxOutbound.
	WindowBytes int
	// Keepalive closes connections silent for longer. Default 3 minutes.
	Keepalive time.Duration
	// AuthTimeout closes connections not authenticated in time. Default 10 s.
	AuthTimeout time.Duration
	// ReceiptDelay is the longest a receipt pushed to an online sender
	// waits to share a write with the next frame to that sender (its SENT,
	// an incoming message). Default 50 ms; negative: none.
	ReceiptDelay time.Duration
	// LiveWait is how long a message pushed to an online recipient before
	// it is stored waits for the recipient's ACK; without one in time it
	// is stored, and its sender gets SENT after the fsync (offline's
	// live.go). Default 250 ms; negative: every message is stored before
	// it is pushed.
	LiveWait time.Duration
	// ReadTimeout bounds waiting for the rest of a started frame. Default 10 s.
	ReadTimeout time.Duration
	// WriteTimeout bounds waiting for a client's socket to drain. Default 10 s.
	WriteTimeout time.Duration
	// MaxOutbound is the per-connection outbound queue limit in bytes before
	// a client is closed as a slow consumer. Default 4 MiB.
	MaxOutbound int

	// Cluster, when set, makes this server a node of a cluster (package
	// cluster; Dir defaults to DataDir/nats). Nil: a single node, and
	// nothing of NATS is started.
	Cluster *cluster.Config

	// Hashing sets argon2id parameters for new password hashes.
	Hashing account.Hashing
	// SessionIdle ends an account session (a device's token) not used for
	// this long: RESUME with its token gets ERROR 25. Default 30 days.
	SessionIdle time.Duration
	// TokenGrace is how long a token RESUME rotated out still resumes
	// (its WELCOME may have been lost). Default 2 minutes.
	TokenGrace time.Duration
	// SessionSweep is how often the sweeper (sweep.go) walks the sessions
	// of the accounts homed here and deletes those past SessionIdle that
	// no RESUME or listing touched. Default 1 hour; negative: never.
	SessionSweep time.Duration
	// SessionSweepBatch is how many session-range records one step of a
	// sweep examines, and SessionSweepPause how long it waits before the
	// next: a pass over a large store yields to logins and RESUMEs.
	// Defaults 512 and 50 ms.
	SessionSweepBatch int
	SessionSweepPause time.Duration
	// CacheSize and MemTableSize size Pebble (defaults 64 MiB each).
	CacheSize    int64
	MemTableSize uint64
	// WALSyncInterval is the least time between two WAL fsyncs
	// (store.Options.SyncInterval): what a SENT may wait at most beyond
	// its fsync, in exchange for one fsync per interval at moderate rates.
	// Default 500us; negative: none.
	WALSyncInterval time.Duration
	// Lanes is the number of inbox commit lanes. Default 4 per core.
	Lanes int
	// TTL is how long an unacknowledged inbox entry is kept. Default 30 days.
	TTL time.Duration
	// Quota is the most entries one inbox may hold. Default 10,000.
	Quota int
	// QuotaBytes is the most bytes one inbox's entries may hold; a SEND
	// that would pass it gets ERROR 75. Default 64 MiB.
	QuotaBytes int64
	// MaxGroup is the most members a group may have. Default 256.
	MaxGroup int
	// NameHold is how long the name of a deleted account stays taken
	// before anyone may register it again. Default 30 days; negative: none.
	NameHold time.Duration
	// MaxList is the most users one of a user's lists (blocked, contacts)
	// may hold. Default and most 4096 (one LIST frame carries a list).
	MaxList int
	// StorageReserve is the free disk space below which new messages,
	// registrations and groups are refused with ERROR 28 (acks, logins and
	// deliveries go on). Default the larger of 4 memtables and 1% of the
	// volume, plus room for Pebble's largest compaction (L0 and its base
	// level, measured).
	StorageReserve int64
	// StorageHysteresis is how far free space must rise above that mark
	// before messages are accepted again. Default Ballast plus two
	// memtables; at least Ballast plus one.
	StorageHysteresis int64
	// Ballast is the size of the EMERGENCY_BALLAST file kept in the data
	// folder and deleted when the disk fills. Default 1% of the volume, at
	// most 1 GiB; negative turns it off.
	Ballast int64
	// StorageInterval is how often free space is read near the mark;
	// further from it, less often, at most 10 intervals apart
	// (store.SpaceOptions.Interval). Default 100 ms.
	StorageInterval time.Duration
	// PresenceInterval coalesces presence updates: watchers hear of a user
	// at most once per interval. Default 1 s.
	PresenceInterval time.Duration

	// MaxConns is the connection capacity; past it new connections get
	// GOAWAY. Default: the open-files limit less 300 for the database and
	// listeners.
	MaxConns int
	// MemoryLimit is the memory the process may use; default the cgroup
	// limit or the machine's RAM. MemoryWatermark (default 0.8) is the
	// fraction of it above which new connections get GOAWAY.
	MemoryLimit     uint64
	MemoryWatermark float64
	// AcceptRate bounds new connections per second (0: 30,000); beyond it
	// they get GOAWAY, so a herd cannot topple the server.
	AcceptRate int
	// RetryAfter is the delay GOAWAY asks for (clients add jitter).
	// Default 2 s.
	RetryAfter time.Duration
	// DrainTimeout bounds a graceful shutdown. Default 10 s.
	DrainTimeout time.Duration

	// LoginsPerSource bounds password attempts (REGISTER, LOGIN,
	// PASSWORD) per source address per minute; FailedLoginsPerUser bounds
	// failed ones per user name. Defaults 30 and 10; negative turns off.
	LoginsPerSource     int
	FailedLoginsPerUser int
	// MaxFrameRate and MaxByteRate bound what one connection may send per
	// second; past them it gets ERROR 50 and is closed. Defaults 1,000
	// frames and 4 MiB; negative turns off (benchmarks).
	MaxFrameRate int
	MaxByteRate  int

	// Prekeys tunes the prekey directory: one-time prekeys kept per
	// device, the KEYS_LOW thresholds and the fetchers remembered per user
	// (package prekey; zero fields take its defaults).
	Prekeys prekey.Config
	// KeyFetches bounds KEYS_FETCH per (requester, target) per
	// KeyFetchWindow; past it ERROR 83. Defaults 10 per 10 minutes;
	// negative turns it off.
	KeyFetches     int
	KeyFetchWindow time.Duration
	// Push configures Web Push to users with no live session (package
	// push). Its KeyFile defaults to DataDir/vapid.key, its TTL to the
	// inbox TTL (capped at 28 days); Online, Pending and Logger are the
	// server's.
	Push push.Config

	Logger *zap.Logger

	// clock, in tests, is the clock account sessions read (their idle
	// expiry). Default time.Now.
	clock func() time.Time
	// syncFault, in tests, fails inbox syncs after the batch was applied.
	syncFault func() error
	// deleteStep, in tests, runs before each account deletion step
	// (deleters.go names them); an error fails the step, and errClosing
	// stops the deletion as a crash would.
	deleteStep func(step string) error
	// dropPush, in tests, loses a push to a session on another node when
	// it reports true (a lost publish).
	dropPush func() bool
	// welcomed, in tests, runs once a login has sent its WELCOME, before
	// it attaches and drains.
	welcomed func(c *Conn)
}

// defaultMaxOutbound is conn's default outbound limit.
const defaultMaxOutbound = 4 << 20

// outbound is the outbound queue limit in effect.
func (c *Config) outbound() int {
	if c.MaxOutbound == 0 {
		return defaultMaxOutbound
	}
	return c.MaxOutbound
}

func (c *Config) setDefaults() {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:7420"
	}
	if c.DataDir == "" {
		c.DataDir = "chatd-data"
	}
	if c.MaxBody == 0 {
		c.MaxBody = codec.MaxBody
	}
	if c.Window == 0 {
		c.Window = 256
	}
	if c.MaxRemoteSends == 0 {
		c.MaxRemoteSends = 512
	}
	if c.WindowBytes == 0 {
		c.WindowBytes = c.outbound() / 2
	}
	if c.Keepalive == 0 {
		c.Keepalive = 3 * time.Minute // also announced in WELCOME
	}
	if c.SessionIdle == 0 {
		c.SessionIdle = 30 * 24 * time.Hour
	}
	if c.TokenGrace == 0 {
		c.TokenGrace = 2 * time.Minute
	}
	if c.SessionSweep == 0 {
		c.SessionSweep = time.Hour
	}
	if c.SessionSweepBatch == 0 {
		c.SessionSweepBatch = 512
	}
	if c.SessionSweepPause == 0 {
		c.SessionSweepPause = 50 * time.Millisecond
	}
	if c.PresenceInterval == 0 {
		c.PresenceInterval = time.Second
	}
	if c.MaxConns == 0 {
		c.MaxConns = 19_700 // replaced by the open-files limit in New
	}
	if c.MemoryLimit == 0 {
		c.MemoryLimit = proc.MemoryLimit()
	}
	if c.MemoryWatermark == 0 {
		c.MemoryWatermark = 0.8
	}
	if c.AcceptRate == 0 {
		c.AcceptRate = 30_000
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = 2 * time.Second
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 10 * time.Second
	}
	if c.LoginsPerSource == 0 {
		c.LoginsPerSource = 30
	}
	if c.FailedLoginsPerUser == 0 {
		c.FailedLoginsPerUser = 10
	}
	if c.KeyFetches == 0 {
		c.KeyFetches = 10
	}
	if c.KeyFetchWindow == 0 {
		c.KeyFetchWindow = 10 * time.Minute
	}
	// Timeouts and the outbound limit are conn's; it applies their defaults.
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
}

// A SettingError is a setting Validate refuses. Setting is its name as
// chatd serve's flags and config file spell it, so that the command can
// say which setting it is and where its value came from.
type SettingError struct {
	Setting string
	Value   any
	Reason  string // what is wrong with it: "outside 1..65535"
}

func (e *SettingError) Error() string { return fmt.Sprintf("%s %v %s", e.Setting, e.Value, e.Reason) }

// Validate reports settings that cannot work, all at once.
func (c *Config) Validate() error {
	var errs []error
	bad := func(setting string, v any, format string, a ...any) {
		errs = append(errs, &SettingError{Setting: setting, Value: v, Reason: fmt.Sprintf(format, a...)})
	}
	if c.MaxBody < 1 || c.MaxBody > codec.MaxBody {
		bad("max-body", c.MaxBody, "outside 1..%d", codec.MaxBody)
	}
	if c.Window < 1 || c.Window > 65535 {
		bad("window", c.Window, "outside 1..65535")
	}
	if c.MaxRemoteSends < 1 {
		bad("max-remote-sends", c.MaxRemoteSends, "below 1")
	}
	if c.Keepalive < time.Second || c.Keepalive > 65535*time.Second {
		bad("keepalive", c.Keepalive, "outside 1s..18h")
	}
	if c.MemoryWatermark <= 0 || c.MemoryWatermark > 1 {
		bad("memory-watermark", c.MemoryWatermark, "outside (0, 1]")
	}
	if c.MaxConns < 1 {
		bad("max-conns", c.MaxConns, "below 1")
	}
	if c.AcceptRate < 0 {
		bad("accept-rate", c.AcceptRate, "below 0")
	}
	if c.RetryAfter < 0 || c.RetryAfter > time.Hour {
		bad("retry-after", c.RetryAfter, "outside 0..1h")
	}
	if c.SessionIdle < 0 {
		bad("session-idle", c.SessionIdle, "below 0")
	}
	if c.TokenGrace < 0 || c.TokenGrace > time.Hour {
		bad("token-grace", c.TokenGrace, "outside 0..1h")
	}
	if c.SessionSweepBatch < 1 {
		bad("session-sweep-batch", c.SessionSweepBatch, "below 1")
	}
	if c.SessionSweepPause < 0 {
		bad("session-sweep-pause", c.SessionSweepPause, "below 0")
	}
	if c.Quota < 0 {
		bad("inbox-quota", c.Quota, "below 0")
	}
	if c.QuotaBytes < 0 {
		bad("inbox-quota-bytes", c.QuotaBytes, "below 0")
	}
	if c.StorageReserve < 0 {
		bad("storage-reserve", c.StorageReserve, "below 0")
	}
	if c.StorageHysteresis < 0 {
		bad("storage-hysteresis", c.StorageHysteresis, "below 0")
	}
	if c.StorageInterval < 0 || c.StorageInterval > time.Minute {
		bad("storage-interval", c.StorageInterval, "outside 0..1m")
	}
	if c.MaxOutbound != 0 && c.MaxOutbound < 2*codec.MaxLen {
		bad("max-outbound", c.MaxOutbound, "below two maximum frames (%d)", 2*codec.MaxLen)
	}
	if c.WindowBytes < 1 || c.WindowBytes > c.outbound()/2 {
		// A window's unacknowledged frames must fit in the outbound queue
		// with room to spare, or a client that reads at full speed is still
		// closed as a slow consumer at login, at every login.
		bad("window-bytes", c.WindowBytes, "outside 1..%d (half the max outbound %d)", c.outbound()/2, c.outbound())
	}
	if c.KeyFetchWindow < time.Second {
		errs = append(errs, fmt.Errorf("key fetch window %v below 1s", c.KeyFetchWindow))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	return nil
}
