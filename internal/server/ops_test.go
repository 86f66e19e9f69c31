package server

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
)

// TestAdmissionCapacity: past its capacity the server answers GOAWAY and
// closes; once under, it accepts again; /readyz says which.
func TestAdmissionCapacity(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxConns = 2
	cfg.RetryAfter = 300 * time.Millisecond
	s := startServer(t, cfg)
	addr, stop, err := s.Admin("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	a := register(t, s, "alice")
	register(t, s, "bob")

	nc, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(nc)
	tp, body := readRaw(t, br)
	var g codec.Goaway
	if tp != codec.TypeGoaway || g.Decode(body) != nil || g.Reason != codec.GoawayCapacity || g.RetryAfter != 300 {
		t.Fatalf("third connection got %v %+v", tp, g)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("refused connection left open: %v", err)
	}
	if code, text := get(t, "http://"+addr.String()+"/readyz"); code != 503 || !strings.Contains(text, "capacity") {
		t.Fatalf("readyz at capacity: %d %q", code, text)
	}
	// The client package waits out the GOAWAY and gets in once there is room.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Room appears only once carol has been turned away at least once.
	refused := s.admit.Rejected().Capacity
	go func() {
		poll(10*time.Second, func() bool { return s.admit.Rejected().Capacity != refused })
		a.Close()
	}()
	c, err := client.Connect(ctx, client.Options{Addr: s.Addr().String(), Name: "carol", Password: "password-carol", Register: true})
	if err != nil {
		t.Fatalf("client did not get in after room appeared: %v", err)
	}
	c.Close()
	if s.admit.Rejected().Capacity == refused {
		t.Fatal("carol was never refused: the test did not exercise waiting out a GOAWAY")
	}
}

// TestGracefulRestartLosesNothing: clients get GOAWAY when the server
// stops, every message that got SENT before is delivered after the
// restart.
func TestGracefulRestartLosesNothing(t *testing.T) {
	cfg := testConfig(t)
	s1, stop := serve(t, cfg)
	cfg.Addr = s1.Addr().String()
	alice, bob := register(t, s1, "alice"), register(t, s1, "bob")
	bobID := bob.Welcome.User
	bob.Close()
	acked := map[codec.MsgID]bool{}
	for i := 0; i < 300; i++ {
		alice.Send(bobID, []byte("m"), i%10 == 9)
	}
	for len(acked) < 150 {
		acked[next[*codec.Sent](t, alice).ID] = true
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// Everything still in flight is acknowledged before the connection ends,
	// then GOAWAY says to come back.
	goaway := false
	for f := range alice.Events() {
		switch f := f.(type) {
		case *codec.Sent:
			acked[f.ID] = true
		case *codec.Goaway:
			goaway = f.Reason == codec.GoawayShutdown
		}
	}
	if !goaway {
		t.Fatal("no GOAWAY before the server closed")
	}
	s2 := startServer(t, cfg)
	b := login(t, s2, "bob")
	for len(acked) > 0 {
		d := next[*codec.Deliver](t, b)
		delete(acked, d.ID)
		b.Ack(d.Seq, true)
	}
}

// TestMetricsEndpoint scrapes /metrics and finds every metric operators
// are promised, with live values.
func TestMetricsEndpoint(t *testing.T) {
	s := startServer(t, testConfig(t))
	addr, stop, err := s.Admin("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	alice, bob := register(t, s, "alice"), register(t, s, "bob")
	alice.Send(bob.Welcome.User, []byte("hi"), true)
	next[*codec.Sent](t, alice)
	d := next[*codec.Deliver](t, bob)
	bob.Ack(d.Seq, true)
	// One connection that is not chatd at all.
	nc, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	nc.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	io.Copy(io.Discard, nc)
	nc.Close()
	code, text := get(t, "http://"+addr.String()+"/metrics")
	if code != 200 {
		t.Fatalf("metrics: %d", code)
	}
	for _, want := range []string{
		"chatd_connections 2", "chatd_sessions 2", `chatd_logins_total{kind="register"} 2`,
		"chatd_frames_in_total", "chatd_frames_out_total", "chatd_bytes_in_total", "chatd_bytes_out_total",
		"chatd_messages_routed_total 1", "chatd_deliveries_total", "chatd_inbox_entries", "chatd_drain_backlog_sessions",
		"chatd_expired_entries_total", `chatd_rejects_total{reason="capacity"}`,
		`chatd_bad_input_total{reason="bad_preamble"} 1`, `chatd_bad_input_total{reason="slow_consumer"} 0`, "chatd_pebble_wal_bytes", "chatd_pebble_compactions_total",
		"go_goroutines", "process_resident_memory_bytes",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	for _, path := range []string{"/healthz", "/readyz", "/debug/pprof/"} {
		if code, _ := get(t, "http://"+addr.String()+path); code != 200 {
			t.Errorf("%s: %d", path, code)
		}
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func readRaw(t *testing.T, br *bufio.Reader) (codec.Type, []byte) {
	t.Helper()
	var hdr [4]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		t.Fatal(err)
	}
	n := int(hdr[0])<<24 | int(hdr[1])<<16 | int(hdr[2])<<8 | int(hdr[3])
	b := make([]byte, n)
	if _, err := io.ReadFull(br, b); err != nil {
		t.Fatal(err)
	}
	return codec.Type(b[0]), b[1:]
}
