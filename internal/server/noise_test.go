package server

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/secure"
)

func TestEncryptedChat(t *testing.T) {
	cfg := testConfig(t)
	cfg.Plaintext = false
	s := startServer(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tr := range []codec.Transport{codec.TransportNoiseXX, codec.TransportNoiseIK} {
		a, err := client.DialTransport(ctx, clientAddr(t, s), tr, s.PublicKey())
		if err != nil {
			t.Fatalf("transport %d: %v", tr, err)
		}
		defer a.Close()
		b, err := client.DialTransport(ctx, clientAddr(t, s), tr, s.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		na, nb := "alice"+string(rune('0'+tr)), "bob"+string(rune('0'+tr))
		if _, err := a.Register(ctx, na, "password-"+na); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Register(ctx, nb, "password-"+nb); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 100; i++ {
			a.Send(b.Welcome.User, make([]byte, 700), i%10 == 9) // several records' worth
		}
		for i := 0; i < 100; i++ {
			if d := next[*codec.Deliver](t, b); len(d.Body) != 700 {
				t.Fatalf("body of %d bytes", len(d.Body))
			}
		}
	}
	// A client pinned to another key refuses to talk to this server.
	other, _ := secure.GenerateKeypair()
	if _, err := client.DialTransport(ctx, clientAddr(t, s), codec.TransportNoiseXX, other.Public); !errors.Is(err, secure.ErrPinned) {
		t.Fatalf("wrong pin: %v", err)
	}
	// Without --plaintext, a plaintext client gets ERROR 6 and nothing more.
	pc, err := client.Dial(ctx, clientAddr(t, s))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.Login(ctx, "alice1", "password-alice1"); err == nil {
		t.Fatal("plaintext login succeeded on an encrypted-only server")
	}
}

// rawSecure opens a Noise XX session by hand, to send what a real client
// never would.
func rawSecure(t *testing.T, s *Server) (net.Conn, *bufio.Reader, *secure.Session) {
	t.Helper()
	nc, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	pre := codec.AppendPreamble(nil, codec.TransportNoiseXX)
	hs, _ := secure.Client(codec.TransportNoiseXX, s.PublicKey(), pre)
	br := bufio.NewReader(nc)
	m1, _ := hs.Write(pre)
	nc.Write(m1)
	m2, err := secure.ReadRecord(br, nil)
	if err != nil || hs.Read(m2) != nil {
		t.Fatalf("handshake: %v", err)
	}
	m3, _ := hs.Write(nil)
	nc.Write(m3)
	return nc, br, hs.Session()
}

func expectClosedSilently(t *testing.T, br *bufio.Reader) {
	t.Helper()
	if n, err := io.Copy(io.Discard, br); err != nil || n != 0 {
		t.Fatalf("server sent %d bytes (%v) instead of closing", n, err)
	}
}

func TestTamperedReplayedRecordsClose(t *testing.T) {
	cfg := testConfig(t)
	cfg.Plaintext = false
	s := startServer(t, cfg)
	ping := (&codec.Ping{Nonce: 1}).Append(nil)

	// A record with one bit flipped.
	nc, br, sess := rawSecure(t, s)
	rec, _ := sess.Seal(nil, ping)
	rec[len(rec)-1] ^= 1
	nc.Write(rec)
	expectClosedSilently(t, br)
	nc.Close()

	// A record sent twice: the first is answered, the replay ends it.
	nc, br, sess = rawSecure(t, s)
	rec, _ = sess.Seal(nil, ping)
	nc.Write(rec)
	hdr, err := secure.ReadRecord(br, nil) // the PONG, sealed
	if err != nil || len(hdr) == 0 {
		t.Fatalf("no reply to a good record: %v", err)
	}
	nc.Write(rec)
	expectClosedSilently(t, br)
	nc.Close()

	// Two records sent in the wrong order: the first to arrive fails.
	nc, br, sess = rawSecure(t, s)
	r1, _ := sess.Seal(nil, ping)
	r2, _ := sess.Seal(nil, (&codec.Ping{Nonce: 2}).Append(nil))
	nc.Write(append(r2, r1...))
	expectClosedSilently(t, br)
	nc.Close()

	// A client that skips the handshake and sends frames gets nothing.
	nc, err = net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	nc.Write(append(codec.AppendPreamble(nil, codec.TransportNoiseXX), ping...))
	expectClosedSilently(t, bufio.NewReader(nc))
}
