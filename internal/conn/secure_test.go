package conn

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/secure"
	"github.com/flynn/noise"
)

// noisePeer is a hand-made Noise XX client holding the raw cipher states,
// so that it can send records a real client never would: empty ones, and
// ones that split or misstate a frame.
type noisePeer struct {
	nc     net.Conn
	br     *bufio.Reader
	tx, rx *noise.CipherState
}

func dialNoise(t *testing.T, s *Server[int]) *noisePeer {
	t.Helper()
	nc, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return noiseOver(t, nc)
}

// noiseOver runs the initiator's XX handshake on nc.
func noiseOver(t *testing.T, nc net.Conn) *noisePeer {
	t.Helper()
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	pre := codec.AppendPreamble(nil, codec.TransportNoiseXX)
	static, _ := secure.GenerateKeypair()
	hs, err := noise.NewHandshakeState(noise.Config{CipherSuite: secure.Suite, Pattern: noise.HandshakeXX,
		Initiator: true, Prologue: pre, StaticKeypair: static})
	if err != nil {
		t.Fatal(err)
	}
	p := &noisePeer{nc: nc, br: bufio.NewReader(nc)}
	m1, _, _, _ := hs.WriteMessage(nil, nil)
	nc.Write(append(pre, record(m1)...))
	m2, err := secure.ReadRecord(p.br, nil)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if _, _, _, err := hs.ReadMessage(nil, m2); err != nil {
		t.Fatal(err)
	}
	m3, cs1, cs2, _ := hs.WriteMessage(nil, nil)
	nc.Write(record(m3))
	p.tx, p.rx = cs1, cs2
	return p
}

func record(msg []byte) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(msg))), msg...)
}

// send seals plain, whatever it holds, in one record.
func (p *noisePeer) send(t *testing.T, plain []byte) {
	t.Helper()
	ct, err := p.tx.Encrypt(nil, nil, plain)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.nc.Write(record(ct)); err != nil {
		t.Fatal(err)
	}
}

// next reads one record and returns the one frame it must hold.
func (p *noisePeer) next(t *testing.T) (codec.Type, []byte) {
	t.Helper()
	ct, err := secure.ReadRecord(p.br, nil)
	if err != nil {
		t.Fatalf("read record: %v", err)
	}
	plain, err := p.rx.Decrypt(nil, nil, ct)
	if err != nil {
		t.Fatalf("open record: %v", err)
	}
	tp, body, rest, ok, err := codec.Split(plain, 0)
	if !ok || err != nil || len(rest) != 0 {
		t.Fatalf("record holds %x, not one frame", plain)
	}
	return tp, body
}

func (p *noisePeer) expectError(t *testing.T, code codec.Code) {
	t.Helper()
	tp, b := p.next(t)
	var e codec.Error
	if tp != codec.TypeError || e.Decode(b) != nil || e.Code != code {
		t.Fatalf("got %v %x, want ERROR %v", tp, b, code)
	}
	p.expectEOF(t)
}

func (p *noisePeer) expectEOF(t *testing.T) {
	t.Helper()
	if n, err := io.Copy(io.Discard, p.br); err != nil || n != 0 {
		t.Fatalf("got %d more bytes (%v), want the connection closed", n, err)
	}
}

func startNoiseServer(t *testing.T, cfg Config) *Server[int] {
	key, err := secure.GenerateKeypair()
	if err != nil {
		t.Fatal(err)
	}
	cfg.NoiseKey = &key
	s, _ := startServer(t, cfg)
	return s
}

// TestBadFramesInRecords checks that a bad frame inside a good record gets
// the ERROR it gets in plaintext, sealed, and then the close (it used to
// be a silent close when the length ran past the record).
func TestBadFramesInRecords(t *testing.T) {
	s := startNoiseServer(t, Config{MaxFrame: 1024})
	ping := (&codec.Ping{Nonce: 9}).Append(nil)

	t.Run("oversized header", func(t *testing.T) {
		p := dialNoise(t, s)
		p.send(t, []byte{0x7f, 0xff, 0xff, 0xff, 0x40})
		p.expectError(t, codec.CodeTooLarge)
	})
	t.Run("oversized whole frame", func(t *testing.T) {
		p := dialNoise(t, s)
		big := make([]byte, 4+2000)
		binary.BigEndian.PutUint32(big, 2000)
		big[4] = byte(codec.TypePing)
		p.send(t, big)
		p.expectError(t, codec.CodeTooLarge)
	})
	t.Run("zero length", func(t *testing.T) {
		p := dialNoise(t, s)
		p.send(t, []byte{0, 0, 0, 0})
		p.expectError(t, codec.CodeMalformed)
	})
	t.Run("frame split across two records", func(t *testing.T) {
		p := dialNoise(t, s)
		p.send(t, ping[:6])
		p.send(t, ping[6:])
		p.expectError(t, codec.CodeMalformed)
	})
	t.Run("empty record is skipped", func(t *testing.T) {
		p := dialNoise(t, s)
		p.send(t, nil) // just the tag; it still uses up a nonce
		p.send(t, ping)
		if tp, _ := p.next(t); tp != codec.TypePong {
			t.Fatalf("got %v after an empty record, want PONG", tp)
		}
	})
	t.Run("record too short to hold a tag", func(t *testing.T) {
		p := dialNoise(t, s)
		p.nc.Write([]byte{0, 0})
		p.expectEOF(t)
	})
	t.Run("server frame type", func(t *testing.T) {
		p := dialNoise(t, s)
		p.send(t, (&codec.Kicked{Reason: codec.KickIdle}).Append(nil))
		p.expectError(t, codec.CodeWrongDirection)
	})
}
