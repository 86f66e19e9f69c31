package conn

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/secure"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestBadInputCountedAndLogged sends many kinds of bad input over real
// sockets and checks the count of each reason, that the first few of a
// reason are logged with the peer's address and the rest are not, and
// that a summary line then gives the counts.
func TestBadInputCountedAndLogged(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	key, _ := secure.GenerateKeypair()
	s, _ := startServer(t, Config{Logger: zap.New(core), NoiseKey: &key, MaxFrame: 1024, MaxFrameRate: 20,
		ReadTimeout: 300 * time.Millisecond, AuthTimeout: 600 * time.Millisecond, Keepalive: 800 * time.Millisecond,
		SweepInterval: 50 * time.Millisecond, LogInterval: 300 * time.Millisecond})
	plain := codec.AppendPreamble(nil, codec.TransportPlain)
	after := func(b ...[]byte) []byte {
		out := append([]byte(nil), plain...)
		for _, x := range b {
			out = append(out, x...)
		}
		return out
	}
	ping := (&codec.Ping{Nonce: 1}).Append(nil)
	var flood []byte
	for i := 0; i < 30; i++ {
		flood = append(flood, ping...)
	}
	send := func(b []byte) {
		nc, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(5 * time.Second))
		nc.Write(b)
		if _, err := io.Copy(io.Discard, nc); err != nil {
			t.Fatalf("%x: %v", b, err)
		}
	}
	const preambles = 2*badLogged + 3
	for i := 0; i < preambles; i++ {
		send([]byte("GET / HTTP/1.1\r\n\r\n"))
	}
	send([]byte{'c', 'h', 'a', 't', 'd', 9, 0, 0})
	send([]byte{'c', 'h', 'a', 't', 'd', 1, 0, 1}) // reserved byte set
	send([]byte{'c', 'h', 'a', 't', 'd', 1, 7, 0}) // no such transport
	send(append(codec.AppendPreamble(nil, codec.TransportNoiseXX), 0, 4, 1, 2, 3, 4))
	send(after([]byte{0, 0, 8, 0}))
	send(after([]byte{0, 0, 0, 0}))
	send(after([]byte{0, 0, 0, 1, 0xee}))
	send(after((&codec.Kicked{Reason: codec.KickIdle}).Append(nil)))
	send(after(flood))
	send(after([]byte{0, 0})) // stalls: read timeout
	send(nil)                 // silent: auth timeout
	p := dialNoise(t, s)      // a record that does not open
	p.nc.Write(record(make([]byte, 40)))
	p.expectEOF(t)
	idle, br := dial(t, s.Addr().String())
	defer idle.Close()
	if _, err := io.Copy(io.Discard, br); err != nil {
		t.Fatal(err)
	}

	want := map[Reason]uint64{
		ReasonBadPreamble: preambles + 1, ReasonVersion: 1, ReasonTransport: 1, ReasonHandshake: 1, ReasonBadRecord: 1,
		ReasonTooLarge: 1, ReasonMalformed: 1, ReasonUnknownType: 1, ReasonWrongDirection: 1,
		ReasonRateLimited: 1, ReasonReadTimeout: 1, ReasonAuthTimeout: 1, ReasonIdle: 1,
	}
	waitFor(t, func() bool { return s.Snapshot().BadInput[ReasonIdle] == 1 })
	got := s.Snapshot().BadInput
	for r := Reason(0); r < NumReasons; r++ {
		if got[r] != want[r] {
			t.Errorf("%v: counted %d, want %d", r, got[r], want[r])
		}
	}

	// One line each with the address, except bad preambles: only the first
	// few, then a summary with the count.
	waitFor(t, func() bool { return logs.FilterMessageSnippet("since the last summary").Len() > 0 })
	for r, n := range want {
		lines := logs.FilterMessage("closing connection: bad input").FilterField(zap.Stringer("reason", r)).All()
		if n > badLogged {
			// badLogged per interval: more only if the burst straddled one.
			intervals := uint64(logs.FilterMessageSnippet("since the last summary").Len() + 1)
			if got := uint64(len(lines)); got < badLogged || got > badLogged*intervals {
				t.Errorf("%v: %d lines logged, want %d per interval over %d", r, got, badLogged, intervals)
			}
		} else if uint64(len(lines)) != n {
			t.Errorf("%v: %d lines logged, want %d", r, len(lines), n)
		}
		for _, l := range lines {
			if remote := l.ContextMap()["remote"]; !strings.HasPrefix(remote.(string), "127.0.0.1:") {
				t.Errorf("%v: logged without the peer's address: %v", r, l.ContextMap())
			}
		}
	}
	// The counts may be split over more than one summary when the work
	// straddles an interval: together they account for every one.
	summed := func() (n uint64) {
		for _, sum := range logs.FilterMessageSnippet("since the last summary").All() {
			if sum.Level != zapcore.WarnLevel {
				t.Errorf("summary at %v", sum.Level)
			}
			if v, ok := sum.ContextMap()["bad_preamble"].(uint64); ok {
				n += v
			}
		}
		return n
	}
	// An interval in which no reason went over the quota writes no
	// summary: its few were logged one by one. So every bad preamble is in
	// a summary or on a line of its own (a summarized interval's first few
	// are both), and no summary counts more than there were.
	lines := func() uint64 {
		return uint64(logs.FilterMessage("closing connection: bad input").FilterField(zap.Stringer("reason", ReasonBadPreamble)).Len())
	}
	waitFor(t, func() bool { return summed()+lines() >= uint64(preambles+1) })
	if n := summed(); n == 0 || n > uint64(preambles+1) {
		t.Errorf("summaries count %d bad preambles, want 1 to %d", n, preambles+1)
	}
}
