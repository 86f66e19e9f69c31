package conn

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/chatd/chatd/codec"
	"go.uber.org/zap"
)

// Reason says why the server closed a connection it did not want to: bad
// input from the peer, or a peer that stalled. Each is counted (Snapshot
// and chatd_bad_input_total) and logged at a bounded rate.
type Reason uint8

const (
	ReasonBadPreamble      Reason = iota // magic or reserved byte wrong (ERROR 5)
	ReasonVersion                        // protocol version not 1 (ERROR 4)
	ReasonPlaintextRefused               // plaintext on a server that requires encryption (ERROR 6)
	ReasonTransport                      // a transport this server does not offer (ERROR 6)
	ReasonHandshake                      // the Noise handshake failed (silent close)
	ReasonBadRecord                      // a record did not open: altered, replayed, reordered (silent close)
	ReasonTooLarge                       // a frame over the length limit (ERROR 2)
	ReasonMalformed                      // zero length, a record ending inside a frame, a body that does not decode (ERROR 1)
	ReasonUnknownType                    // an unknown frame type (ERROR 3)
	ReasonWrongDirection                 // a server-only frame type from a client (ERROR 7)
	ReasonRateLimited                    // over the frame or byte rate (ERROR 50)
	ReasonReadTimeout                    // a frame or record started and not finished in ReadTimeout
	ReasonAuthTimeout                    // not authenticated in AuthTimeout (ERROR 13)
	ReasonIdle                           // nothing arrived for Keepalive (KICKED idle)
	ReasonSlowConsumer                   // did not read what it was sent (ERROR 51)
	ReasonUpgrade                        // a WebSocket upgrade request refused (HTTP error)
	ReasonWSFrame                        // a WebSocket frame breaking RFC 6455 or chatd's binding (close 1002/1003)
	NumReasons
)

var reasonNames = [NumReasons]string{
	"bad_preamble", "version", "plaintext_refused", "transport", "handshake", "bad_record",
	"oversized_frame", "malformed_frame", "unknown_type", "wrong_direction", "rate_limited",
	"read_timeout", "auth_timeout", "idle", "slow_consumer",
	"ws_upgrade", "ws_frame",
}

func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// reasonOf classifies a codec error.
func reasonOf(err error) Reason {
	switch {
	case errors.Is(err, codec.ErrTooLarge):
		return ReasonTooLarge
	case errors.Is(err, codec.ErrUnknownType):
		return ReasonUnknownType
	case errors.Is(err, codec.ErrVersion):
		return ReasonVersion
	case errors.Is(err, codec.ErrBadPreamble):
		return ReasonBadPreamble
	}
	return ReasonMalformed
}

// badLogged is how many events of each reason are logged one by one, with
// the peer's address, per log interval; the rest are only counted, and the
// sweeper writes one summary line per interval with the counts.
const badLogged = 5

// badInput counts bad input by reason and logs it at a bounded rate, with
// no goroutine or allocation per event beyond the lines it writes.
type badInput struct {
	total  [NumReasons]atomic.Uint64 // since start (Snapshot)
	logged [NumReasons]atomic.Uint32 // lines written this interval

	// Owned by the sweeper: totals at the last summary, and when it was.
	seen [NumReasons]uint64
	last time.Time
}

// note counts one event and logs it if this interval's quota for its
// reason is not used up. remote is called only when the line is written.
func (b *badInput) note(log *zap.Logger, why Reason, remote func() string, detail string) {
	b.total[why].Add(1)
	if b.logged[why].Add(1) > badLogged {
		return
	}
	log.Warn("closing connection: bad input", zap.Stringer("reason", why), zap.String("remote", remote()),
		zap.String("detail", detail))
}

// summarize runs on the sweeper. Once per interval it writes one line with
// the count of each reason seen since the last summary, if some of them
// were not logged one by one, and opens a new interval.
func (b *badInput) summarize(log *zap.Logger, now time.Time, every time.Duration) {
	if now.Sub(b.last) < every {
		return
	}
	b.last = now
	fields := make([]zap.Field, 0, NumReasons+1)
	suppressed := false
	for r := Reason(0); r < NumReasons; r++ {
		t := b.total[r].Load()
		if n := t - b.seen[r]; n > 0 {
			fields = append(fields, zap.Uint64(r.String(), n))
		}
		b.seen[r] = t
		if b.logged[r].Swap(0) > badLogged {
			suppressed = true
		}
	}
	if suppressed {
		log.Warn("bad input since the last summary (only the first of each reason were logged)",
			append(fields, zap.Duration("interval", every))...)
	}
}
