package conn

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/secure"
)

func startWSServer(t *testing.T, cfg Config) (*Server[int], *testHandler) {
	t.Helper()
	h := &testHandler{}
	cfg.AllowPlaintext = true
	s, err := New[int](cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if err := s.ListenWS("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		<-done
	})
	return s, h
}

// wsPeer is a hand-made WebSocket client that can send frames a real one
// never would.
type wsPeer struct {
	nc net.Conn
	br *bufio.Reader
}

const goodKey = "dGhlIHNhbXBsZSBub25jZQ=="

// upgradeRequest builds a request; extra lines replace or add headers
// ("Name: value"; "Name:" alone drops the header).
func upgradeRequest(path string, extra ...string) string {
	hdrs := []string{"Host: chat.test", "Upgrade: websocket", "Connection: Upgrade",
		"Sec-WebSocket-Key: " + goodKey, "Sec-WebSocket-Version: 13", "Sec-WebSocket-Protocol: chatd.v1"}
	for _, e := range extra {
		name, _, _ := strings.Cut(e, ":")
		kept := hdrs[:0]
		for _, h := range hdrs {
			if !strings.HasPrefix(h, name+":") {
				kept = append(kept, h)
			}
		}
		hdrs = kept
		if !strings.HasSuffix(e, ":") {
			hdrs = append(hdrs, e)
		}
	}
	return "GET " + path + " HTTP/1.1\r\n" + strings.Join(hdrs, "\r\n") + "\r\n\r\n"
}

// openWS sends req and returns the peer and the response's status.
func openWS(t *testing.T, s *Server[int], req string) (*wsPeer, int) {
	t.Helper()
	nc, err := net.Dial("tcp", s.WSAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := nc.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	p := &wsPeer{nc: nc, br: bufio.NewReader(nc)}
	resp, err := http.ReadResponse(p.br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols && resp.Header.Get("Sec-WebSocket-Protocol") != Subprotocol {
		t.Fatalf("101 without the subprotocol: %v", resp.Header)
	}
	return p, resp.StatusCode
}

func dialWS(t *testing.T, s *Server[int]) *wsPeer {
	t.Helper()
	p, status := openWS(t, s, upgradeRequest("/chatd"))
	if status != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: status %d", status)
	}
	return p
}

// frame builds a client frame: b0 is FIN|RSV|opcode, masked with a fixed
// mask unless unmasked.
func frame(b0 byte, payload []byte, unmasked bool) []byte {
	var out []byte
	mbit := byte(0x80)
	if unmasked {
		mbit = 0
	}
	switch n := len(payload); {
	case n <= 125:
		out = append(out, b0, mbit|byte(n))
	case n <= 0xffff:
		out = append(out, b0, mbit|126, byte(n>>8), byte(n))
	default:
		out = binary.BigEndian.AppendUint64(append(out, b0, mbit|127), uint64(n))
	}
	if unmasked {
		return append(out, payload...)
	}
	mask := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	out = append(out, mask[:]...)
	for i, b := range payload {
		out = append(out, b^mask[i%4])
	}
	return out
}

func binaryFrame(p []byte) []byte { return frame(0x80|opBinary, p, false) }

func (p *wsPeer) send(t *testing.T, frames ...[]byte) {
	t.Helper()
	var all []byte
	for _, f := range frames {
		all = append(all, f...)
	}
	if _, err := p.nc.Write(all); err != nil {
		t.Fatal(err)
	}
}

// next reads one server frame, which must be unmasked with FIN set.
func (p *wsPeer) next(t *testing.T) (byte, []byte) {
	t.Helper()
	var hdr [2]byte
	if _, err := io.ReadFull(p.br, hdr[:]); err != nil {
		t.Fatalf("read frame header: %v", err)
	}
	if hdr[0]&0xf0 != 0x80 || hdr[1]&0x80 != 0 {
		t.Fatalf("server frame header %x: want FIN, no RSV, unmasked", hdr)
	}
	n := uint64(hdr[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		io.ReadFull(p.br, b[:])
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		io.ReadFull(p.br, b[:])
		n = binary.BigEndian.Uint64(b[:])
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(p.br, payload); err != nil {
		t.Fatalf("read frame payload: %v", err)
	}
	return hdr[0] & 0x0f, payload
}

// nextFrame reads one chatd frame from the binary messages, skipping
// pongs.
func (p *wsPeer) nextFrame(t *testing.T) (codec.Type, []byte) {
	t.Helper()
	var stream []byte
	for {
		if tp, body, _, ok, err := codec.Split(stream, 0); ok && err == nil {
			return tp, body
		}
		op, payload := p.next(t)
		if op != opBinary {
			t.Fatalf("got opcode %d, want binary", op)
		}
		stream = append(stream, payload...)
	}
}

// expectClose reads frames up to a close, checks its status, and then
// that the server closed the socket.
func (p *wsPeer) expectClose(t *testing.T, code uint16) {
	t.Helper()
	for {
		op, payload := p.next(t)
		if op != opClose {
			continue
		}
		if len(payload) < 2 || binary.BigEndian.Uint16(payload) != code {
			t.Fatalf("close %x, want status %d", payload, code)
		}
		break
	}
	// A reset is a close too: the server closes with the refused frame's
	// payload unread (an oversized one), and the kernel then sends RST.
	if n, err := io.Copy(io.Discard, p.br); (err != nil && !errors.Is(err, syscall.ECONNRESET)) || n != 0 {
		t.Fatalf("got %d more bytes (%v) after close", n, err)
	}
}

func ping(nonce uint64) []byte { return (&codec.Ping{Nonce: nonce}).Append(nil) }

// TestWSStreamSplitAnywhere sends the preamble and PINGs coalesced in one
// frame, split over a fragmented message byte by byte, and split across
// messages: framing carries no meaning, every PING gets its PONG in order.
func TestWSStreamSplitAnywhere(t *testing.T) {
	s, _ := startWSServer(t, Config{})
	p := dialWS(t, s)
	// Preamble and two PINGs in one frame.
	p.send(t, binaryFrame(append(append(codec.AppendPreamble(nil, codec.TransportPlain), ping(1)...), ping(2)...)))
	// PING 3 as a fragmented message, one byte per frame.
	f := ping(3)
	var frames [][]byte
	for i := range f {
		b0 := byte(opContinuation)
		if i == 0 {
			b0 = opBinary
		}
		if i == len(f)-1 {
			b0 |= 0x80
		}
		frames = append(frames, frame(b0, f[i:i+1], false))
	}
	// A ping between fragments is allowed (RFC 6455 §5.4).
	frames = append(frames[:3], append([][]byte{frame(0x80|opPing, []byte("hi"), false)}, frames[3:]...)...)
	p.send(t, frames...)
	// PING 4 split across two whole messages, PING 5 whole.
	f = ping(4)
	p.send(t, binaryFrame(f[:5]))
	p.send(t, binaryFrame(append(f[5:], ping(5)...)))
	var got []uint64
	for len(got) < 5 {
		op, payload := p.next(t)
		if op == opPong {
			if string(payload) != "hi" {
				t.Fatalf("pong %q, want the ping's payload", payload)
			}
			continue
		}
		if op != opBinary {
			t.Fatalf("opcode %d", op)
		}
		for len(payload) > 0 {
			tp, body, rest, ok, err := codec.Split(payload, 0)
			if !ok || err != nil || tp != codec.TypePong {
				t.Fatalf("binary message %x does not hold whole PONGs", payload)
			}
			var pong codec.Pong
			pong.Decode(body)
			got = append(got, pong.Nonce)
			payload = rest
		}
	}
	if fmt.Sprint(got) != "[1 2 3 4 5]" {
		t.Fatalf("PONGs %v", got)
	}
	// A clean close is echoed.
	p.send(t, frame(0x80|opClose, binary.BigEndian.AppendUint16(nil, 1000), false))
	p.expectClose(t, 1000)
}

// TestWSRefusedFrames checks each framing violation closes with its status
// (and, for an oversized frame, the ERROR a TCP client gets for one).
func TestWSRefusedFrames(t *testing.T) {
	s, _ := startWSServer(t, Config{})
	login := binaryFrame(append(codec.AppendPreamble(nil, codec.TransportPlain), ping(1)...))
	big := make([]byte, maxWSPayload+1)
	cases := []struct {
		name  string
		frame []byte
		error codec.Code // 0: no ERROR frame, only the close
		close uint16
	}{
		{"unmasked", frame(0x80|opBinary, ping(2), true), 0, closeProtocol},
		{"rsv1 set", frame(0x80|0x40|opBinary, ping(2), false), 0, closeProtocol},
		{"rsv3 set", frame(0x80|0x10|opBinary, ping(2), false), 0, closeProtocol},
		{"text", frame(0x80|opText, []byte("hello"), false), 0, closeUnsupported},
		{"reserved opcode", frame(0x80|0x3, ping(2), false), 0, closeProtocol},
		{"reserved control opcode", frame(0x80|0xB, nil, false), 0, closeProtocol},
		{"continuation first", frame(0x80|opContinuation, ping(2), false), 0, closeProtocol},
		{"binary inside a message", append(frame(opBinary, ping(2)[:3], false), binaryFrame(ping(2))...), 0, closeProtocol},
		{"fragmented ping", frame(opPing, nil, false), 0, closeProtocol},
		{"ping over 125 bytes", frame(0x80|opPing, make([]byte, 126), false), 0, closeProtocol},
		{"close with 1 byte", frame(0x80|opClose, []byte{3}, false), 0, closeProtocol},
		{"close status 1005", frame(0x80|opClose, binary.BigEndian.AppendUint16(nil, 1005), false), 0, closeProtocol},
		{"oversized", binaryFrame(big), codec.CodeTooLarge, closeTooBig},
		{"frame over the codec limit", binaryFrame([]byte{0x7f, 0xff, 0xff, 0xff, 0x10}), codec.CodeTooLarge, closeTooBig},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := dialWS(t, s)
			p.send(t, login)
			if tp, _ := p.nextFrame(t); tp != codec.TypePong {
				t.Fatalf("got %v, want PONG", tp)
			}
			p.send(t, tc.frame)
			if tc.error != 0 {
				tp, b := p.nextFrame(t)
				var e codec.Error
				if tp != codec.TypeError || e.Decode(b) != nil || e.Code != tc.error {
					t.Fatalf("got %v %x, want ERROR %v", tp, b, tc.error)
				}
			}
			p.expectClose(t, tc.close)
		})
	}
	// A 64-bit length is refused from the header alone: nothing is
	// waited for or allocated.
	p := dialWS(t, s)
	p.send(t, login)
	p.nextFrame(t)
	p.send(t, []byte{0x80 | opBinary, 0x80 | 127, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4})
	if tp, _ := p.nextFrame(t); tp != codec.TypeError {
		t.Fatalf("got %v, want ERROR", tp)
	}
	p.expectClose(t, closeTooBig)
	snap := s.Snapshot()
	if snap.BadInput[ReasonWSFrame] != 12 || snap.BadInput[ReasonTooLarge] != 3 {
		t.Fatalf("counted ws_frame %d, oversized %d", snap.BadInput[ReasonWSFrame], snap.BadInput[ReasonTooLarge])
	}
}

// TestWSPingFlood checks that pings count against the frame rate as
// chatd frames do (ERROR 50), and that a flood gets at most one pong per
// turn, not one per ping.
func TestWSPingFlood(t *testing.T) {
	s, _ := startWSServer(t, Config{MaxFrameRate: 100})
	p := dialWS(t, s)
	p.send(t, binaryFrame(append(codec.AppendPreamble(nil, codec.TransportPlain), ping(1)...)))
	p.nextFrame(t)
	var flood []byte
	for i := 0; i < 500; i++ {
		flood = append(flood, frame(0x80|opPing, []byte{byte(i)}, false)...)
	}
	p.send(t, flood)
	pongs := 0
	for {
		op, payload := p.next(t)
		if op == opPong {
			pongs++
			continue
		}
		if op != opBinary {
			t.Fatalf("opcode %d before the ERROR", op)
		}
		tp, body, _, ok, _ := codec.Split(payload, 0)
		var e codec.Error
		if !ok || tp != codec.TypeError || e.Decode(body) != nil || e.Code != codec.CodeRateLimited {
			t.Fatalf("got %x, want ERROR 50", payload)
		}
		break
	}
	p.expectClose(t, closePolicy)
	if pongs > 100 {
		t.Fatalf("%d pongs for a flood over a limit of 100 frames a second", pongs)
	}
}

// TestWSUpgradeRefused checks the requests that get no upgrade.
func TestWSUpgradeRefused(t *testing.T) {
	s, _ := startWSServer(t, Config{WebSocket: WSConfig{Origins: []string{"https://chat.example.com"}}})
	same, _ := startWSServer(t, Config{}) // no allow-list: same host only
	cases := []struct {
		name   string
		srv    *Server[int]
		req    string
		status int
	}{
		{"ok", s, upgradeRequest("/chatd"), 101},
		{"query ignored", s, upgradeRequest("/chatd?v=1"), 101},
		{"allowed origin", s, upgradeRequest("/chatd", "Origin: https://chat.example.com"), 101},
		{"other origin", s, upgradeRequest("/chatd", "Origin: https://evil.example"), 403},
		{"same host without a list", same, upgradeRequest("/chatd", "Origin: http://chat.test"), 101},
		{"other host without a list", same, upgradeRequest("/chatd", "Origin: http://evil.example"), 403},
		{"origin null", same, upgradeRequest("/chatd", "Origin: null"), 403},
		{"wrong path", s, upgradeRequest("/"), 404},
		{"no subprotocol", s, upgradeRequest("/chatd", "Sec-WebSocket-Protocol:"), 400},
		{"wrong subprotocol", s, upgradeRequest("/chatd", "Sec-WebSocket-Protocol: mqtt"), 400},
		{"chatd among others", s, upgradeRequest("/chatd", "Sec-WebSocket-Protocol: mqtt, chatd.v1"), 101},
		{"version 8", s, upgradeRequest("/chatd", "Sec-WebSocket-Version: 8"), 426},
		{"bad key", s, upgradeRequest("/chatd", "Sec-WebSocket-Key: short"), 400},
		{"no upgrade header", s, upgradeRequest("/chatd", "Upgrade:"), 400},
		{"POST", s, strings.Replace(upgradeRequest("/chatd"), "GET", "POST", 1), 405},
		{"head too long", s, upgradeRequest("/chatd", "X-Pad: "+strings.Repeat("a", maxHead)), 431},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, status := openWS(t, tc.srv, tc.req)
			if status != tc.status {
				t.Fatalf("status %d, want %d", status, tc.status)
			}
			if status != 101 {
				if n, err := io.Copy(io.Discard, p.br); err != nil || n != 0 {
					t.Fatalf("got %d more bytes (%v) after a refusal", n, err)
				}
			}
		})
	}
	if n := s.Snapshot().BadInput[ReasonUpgrade] + same.Snapshot().BadInput[ReasonUpgrade]; n != 11 {
		t.Fatalf("%d refused upgrades counted, want 11", n)
	}
}

// TestWSHalfUpgradeClosedAtAuthDeadline sends a head in pieces and never
// finishes it: the connection holds no goroutine meanwhile and is closed
// by the auth deadline, with no byte sent.
func TestWSHalfUpgradeClosedAtAuthDeadline(t *testing.T) {
	s, h := startWSServer(t, Config{AuthTimeout: 500 * time.Millisecond, SweepInterval: 50 * time.Millisecond,
		ReadTimeout: time.Minute})
	nc, err := net.Dial("tcp", s.WSAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	start := time.Now()
	req := upgradeRequest("/chatd")
	nc.Write([]byte(req[:20]))
	nc.Write([]byte(req[20:40]))
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := io.Copy(io.Discard, nc)
	if err != nil || n != 0 {
		t.Fatalf("got %d bytes (%v), want a close with none", n, err)
	}
	// The read timeout is a minute: only the auth deadline can have closed it.
	if d := time.Since(start); d < 500*time.Millisecond || d > 3*time.Second {
		t.Fatalf("closed after %v, want the 500ms auth deadline", d)
	}
	waitFor(t, func() bool { return h.closed.Load() == 1 })
	if got := s.Snapshot().AuthTimeouts; got != 1 {
		t.Fatalf("%d auth timeouts", got)
	}
}

// TestWSNoise runs a Noise XX session over the WebSocket binding through
// the Go client's adapter: the handshake and records are chatd's, the
// framing WebSocket's, and a bad frame inside a record gets the sealed
// ERROR a TCP client gets, then the close.
func TestWSNoise(t *testing.T) {
	key, err := secure.GenerateKeypair()
	if err != nil {
		t.Fatal(err)
	}
	s, _ := startWSServer(t, Config{NoiseKey: &key})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	nc, err := client.DialWebSocket(ctx, "ws://"+s.WSAddr().String()+"/chatd")
	if err != nil {
		t.Fatal(err)
	}
	p := noiseOver(t, nc)
	p.send(t, ping(7))
	if tp, body := p.next(t); tp != codec.TypePong {
		t.Fatalf("got %v %x, want PONG", tp, body)
	}
	p.send(t, []byte{0, 0, 0, 0})
	p.expectError(t, codec.CodeMalformed)
}

// TestWSIdleHoldNoGoroutines holds upgraded connections, and connections
// that sent half an upgrade request, and checks that neither holds a
// goroutine: the head is buffered between turns, not waited for.
func TestWSIdleHoldNoGoroutines(t *testing.T) {
	s, h := startWSServer(t, Config{ReadTimeout: time.Minute})
	runtime.GC()
	base := runtime.NumGoroutine()
	const n = 200
	login := binaryFrame(append(codec.AppendPreamble(nil, codec.TransportPlain), ping(1)...))
	half := upgradeRequest("/chatd")[:50]
	for i := 0; i < n; i++ {
		p := dialWS(t, s)
		p.send(t, login)
		p.nextFrame(t)
		nc, err := net.Dial("tcp", s.WSAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		nc.Write([]byte(half))
	}
	waitFor(t, func() bool { return s.Len() == 2*n && int(h.frames.Load()) == n })
	deadline := time.Now().Add(5 * time.Second)
	for g := runtime.NumGoroutine(); g > base+20; g = runtime.NumGoroutine() {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines with %d idle and %d half-upgraded connections (started at %d)", g, n, n, base)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestWSStalledPartialFrame sends half a PING inside a WebSocket frame and
// then only pings: the half frame must still be finished within the read
// timeout, as on TCP, or the connection is closed.
func TestWSStalledPartialFrame(t *testing.T) {
	s, _ := startWSServer(t, Config{ReadTimeout: 300 * time.Millisecond})
	p := dialWS(t, s)
	p.send(t, binaryFrame(append(codec.AppendPreamble(nil, codec.TransportPlain), ping(1)...)))
	p.nextFrame(t)
	p.send(t, binaryFrame(ping(2)[:6]))
	start := time.Now()
	go func() { // keep the connection busy with pings; writes fail once it closes
		for i := 0; i < 50; i++ {
			if _, err := p.nc.Write(frame(0x80|opPing, nil, false)); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	p.expectClose(t, closePolicy)
	if d := time.Since(start); d < 300*time.Millisecond || d > 2*time.Second {
		t.Fatalf("closed after %v, want the 300ms read timeout", d)
	}
	if n := s.Snapshot().ReadTimeouts; n != 1 {
		t.Fatalf("%d read timeouts counted", n)
	}
}

// TestWSRefusedAtAdmission checks that a WebSocket client the admitter
// refuses gets an HTTP 503, not the GOAWAY frame a TCP client gets (it has
// not upgraded, so it would read the frame as HTTP).
func TestWSRefusedAtAdmission(t *testing.T) {
	s, _ := startWSServer(t, Config{})
	s.SetAdmitter(func() (bool, []byte) { return false, []byte("GOAWAY frame") })
	nc, err := net.Dial("tcp", s.WSAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", resp.StatusCode)
	}
	if s.Snapshot().Rejected != 1 {
		t.Fatalf("rejected %d", s.Snapshot().Rejected)
	}
}
