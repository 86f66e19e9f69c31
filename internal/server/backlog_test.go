package server

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
)

// TestLargeBacklogDrains is issue 12.1: an offline user whose inbox holds
// large messages must be able to log in and read them. The drain used to
// queue a whole window of entries (256) whatever their size, which passed
// the 4 MiB outbound limit and closed the new connection as a slow
// consumer at every login. Now the window is bounded by bytes too.
func TestLargeBacklogDrains(t *testing.T) {
	for _, tc := range []struct {
		name      string
		n, size   int
		wantBytes int // the window's byte bound for the default outbound limit
	}{
		{"300x20KB", 300, 20_000, 2 << 20},
		{"100x65000B", 100, 65_000, 2 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t) // default MaxOutbound (4 MiB), Window (256) and WindowBytes
			s := startServer(t, cfg)
			if s.cfg.WindowBytes != tc.wantBytes {
				t.Fatalf("window bytes %d, want %d", s.cfg.WindowBytes, tc.wantBytes)
			}
			alice := register(t, s, "alice")
			bob := register(t, s, "bob")
			bobID := bob.Welcome.User
			bob.Close()
			waitFor(t, func() bool { _, online := s.sessions.Lookup(bobID); return !online })

			body := make([]byte, tc.size)
			for i := 0; i < tc.n; i++ {
				binary.BigEndian.PutUint32(body, uint32(i))
				if _, err := alice.Send(bobID, body, i%16 == 15 || i == tc.n-1); err != nil {
					t.Fatal(err)
				}
			}
			for i := 0; i < tc.n; i++ {
				next[*codec.Sent](t, alice)
			}

			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cl, err := client.Connect(ctx, client.Options{
				Addr: clientAddr(t, s), Name: "bob", Password: "password-bob", Plaintext: true,
			})
			if err != nil {
				t.Fatalf("bob cannot log in: %v", err)
			}
			defer cl.Close()
			got := make([]bool, tc.n)
			for left := tc.n; left > 0; {
				select {
				case f, ok := <-cl.Events():
					if !ok {
						t.Fatalf("client ended: %v", cl.Err())
					}
					switch f := f.(type) {
					case *codec.Deliver:
						i := binary.BigEndian.Uint32(f.Body)
						if len(f.Body) != tc.size || int(i) >= tc.n || got[i] {
							t.Fatalf("unexpected or repeated delivery %d (%d bytes)", i, len(f.Body))
						}
						got[i] = true
						left--
					case *codec.Error:
						t.Fatalf("bob got ERROR %v", f)
					}
				case <-ctx.Done():
					t.Fatalf("drained %d of %d", countTrue(got), tc.n)
				}
			}
			elapsed := time.Since(start)
			if sc := s.Stats().Conn.SlowConsumers; sc != 0 {
				t.Fatalf("%d slow-consumer closes during the drain", sc)
			}
			peak := s.counters.inflightPeak.Load()
			if peak > int64(s.cfg.WindowBytes) {
				t.Fatalf("peak unacknowledged bytes %d above the window's %d", peak, s.cfg.WindowBytes)
			}
			t.Logf("drained %d x %d B in %v; peak unacknowledged (outbound) bytes %d of max outbound %d",
				tc.n, tc.size, elapsed.Round(time.Millisecond), peak, s.cfg.outbound())
		})
	}
}

func countTrue(b []bool) int {
	n := 0
	for _, v := range b {
		if v {
			n++
		}
	}
	return n
}

// TestWindowBytesSettings: the settings check keeps the byte window below
// the outbound limit.
func TestWindowBytesSettings(t *testing.T) {
	for _, tc := range []struct {
		outbound, window int
		ok               bool
	}{
		{0, 0, true},              // defaults: 2 MiB of 4 MiB
		{0, 2 << 20, true},        // half the default
		{0, 3 << 20, false},       // a full window would nearly fill the queue
		{8 << 20, 4 << 20, true},  // half a larger queue
		{1 << 20, 2 << 20, false}, // above the queue itself
		{0, -1, false},
	} {
		cfg := Config{MaxOutbound: tc.outbound, WindowBytes: tc.window}
		cfg.setDefaults()
		err := cfg.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("max outbound %d, window bytes %d: err %v, want ok=%v", tc.outbound, tc.window, err, tc.ok)
		}
	}
}

// TestLiveWindowBytes: live pushes to an online user obey the byte bound
// too. Bob reads but does not acknowledge while alice sends 100 messages
// of 65,000 bytes; the server must hold back what passes the window's
// bytes, and send it as bob acknowledges.
func TestLiveWindowBytes(t *testing.T) {
	const n, size = 100, 65_000
	s := startServer(t, testConfig(t))
	alice := register(t, s, "alice")
	bob := register(t, s, "bob")
	body := make([]byte, size)
	for i := 0; i < n; i++ {
		binary.BigEndian.PutUint32(body, uint32(i))
		if _, err := alice.Send(bob.Welcome.User, body, true); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i++ {
		next[*codec.Sent](t, alice) // every entry is applied, so pushed or held back
	}
	if peak := s.counters.inflightPeak.Load(); peak > int64(s.cfg.WindowBytes) {
		t.Fatalf("peak unacknowledged bytes %d above the window's %d", peak, s.cfg.WindowBytes)
	}
	for i := 0; i < n; i++ {
		d := until[*codec.Deliver](t, bob)
		if got := binary.BigEndian.Uint32(d.Body); got != uint32(i) {
			t.Fatalf("delivery %d is message %d", i, got)
		}
		bob.Ack(d.Seq, true)
	}
}
