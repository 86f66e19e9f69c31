package conn

import (
	"errors"
	"fmt"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/secure"
	"go.uber.org/zap"
)

// Config tunes the connection layer. A zero field means its default.
type Config struct {
	// MaxFrame is the largest frame len accepted (type + body). Default and
	// maximum: codec.MaxLen.
	MaxFrame int
	// MaxOutbound is how many bytes may wait in one connection's outbound
	// queue before it is closed as a slow consumer. Default 4 MiB.
	MaxOutbound int
	// ReadTimeout bounds the wait for the rest of a frame once its first
	// byte arrived (slow or stalled peers). Default 10 s.
	ReadTimeout time.Duration
	// WriteTimeout bounds the wait for a socket that accepts no more bytes.
	// Default 10 s.
	WriteTimeout time.Duration
	// Keepalive closes connections from which nothing arrived for this
	// long. Default 3 minutes.
	Keepalive time.Duration
	// AuthTimeout closes connections that have not authenticated within
	// this long after connecting. Default 10 s.
	AuthTimeout time.Duration
	// SweepInterval is how often connections not yet authenticated are
	// checked against AuthTimeout, enforced between its value and that much
	// later. Keepalive is checked every max(SweepInterval, Keepalive/64).
	// Default 250 ms.
	SweepInterval time.Duration
	// LazyDelay is the longest a lazy frame (Conn.EndLazy: receipts)
	// waits for another frame to share its write. Default 50 ms; negative
	// means none (every lazy frame is flushed at once by the flusher).
	LazyDelay time.Duration
	// LogInterval is how often a summary of bad input is logged when more
	// arrived than is logged one by one. Default 10 s.
	LogInterval time.Duration
	// MaxFrameRate and MaxByteRate bound what one connection may send per
	// second (whole-second windows); past either it gets ERROR 50 and is
	// closed. Defaults 1,000 frames and 4 MiB; negative means no limit.
	MaxFrameRate int
	MaxByteRate  int
	// NoiseKey is the server's static key; with it, clients may use the
	// Noise transports (XX, IK). Without it only plaintext can work.
	NoiseKey *secure.Keypair
	// NoiseKeys, if set, replaces NoiseKey: a server's keys during a key
	// rotation (the old and the new, and the retired ones to refuse),
	// swapped whole while it runs.
	NoiseKeys *secure.Keyring
	// AllowPlaintext accepts the plaintext transport. Off by default.
	AllowPlaintext bool
	// WebSocket configures the WebSocket listener, if ListenWS is used.
	WebSocket WSConfig
	// Logger receives connection-level events (never per-frame ones).
	Logger *zap.Logger
}

func (c *Config) setDefaults() {
	if c.NoiseKeys == nil && c.NoiseKey != nil {
		c.NoiseKeys = secure.NewKeyring(&secure.Keys{Current: *c.NoiseKey})
	}
	if c.MaxFrame == 0 {
		c.MaxFrame = codec.MaxLen
	}
	if c.MaxOutbound == 0 {
		c.MaxOutbound = 4 << 20
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = 10 * time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.Keepalive == 0 {
		c.Keepalive = 3 * time.Minute
	}
	if c.AuthTimeout == 0 {
		c.AuthTimeout = 10 * time.Second
	}
	if c.SweepInterval == 0 {
		c.SweepInterval = 250 * time.Millisecond
	}
	if c.LazyDelay == 0 {
		c.LazyDelay = 50 * time.Millisecond
	} else if c.LazyDelay < 0 {
		c.LazyDelay = 0
	}
	if c.LogInterval == 0 {
		c.LogInterval = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.MaxFrameRate == 0 {
		c.MaxFrameRate = 1000
	}
	if c.MaxByteRate == 0 {
		c.MaxByteRate = 4 << 20
	}
}

// Validate reports settings that cannot work.
func (c *Config) Validate() error {
	var errs []error
	if c.MaxFrame < 64 || c.MaxFrame > codec.MaxLen {
		errs = append(errs, fmt.Errorf("max frame %d outside 64..%d", c.MaxFrame, codec.MaxLen))
	}
	if c.MaxOutbound < c.MaxFrame+4 {
		errs = append(errs, fmt.Errorf("max outbound %d is smaller than one frame", c.MaxOutbound))
	}
	for name, d := range map[string]time.Duration{
		"read timeout": c.ReadTimeout, "write timeout": c.WriteTimeout, "keepalive": c.Keepalive,
		"auth timeout": c.AuthTimeout, "sweep interval": c.SweepInterval, "log interval": c.LogInterval,
	} {
		if d < 10*time.Millisecond {
			errs = append(errs, fmt.Errorf("%s %v is below 10ms", name, d))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("conn: %w", err)
	}
	return nil
}
