package client_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/secure"
	"github.com/chatd/chatd/internal/server"
)

type moved struct {
	old, new []byte
	from     time.Time
}

// nextEvent waits for the next frame of type T on ch, skipping others.
func nextEvent[T codec.Frame](t *testing.T, ch <-chan codec.Frame) T {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case f, ok := <-ch:
			if !ok {
				t.Fatal("events closed")
			}
			if g, ok := f.(T); ok {
				return g
			}
		case <-deadline:
			var zero T
			t.Fatalf("no %T within 10 s", zero)
		}
	}
}

// dialPinned opens a Noise XX connection pinning key and logs in as name.
func dialPinned(t *testing.T, addr string, key []byte, name string) (*client.Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.DialTransport(ctx, addr, codec.TransportNoiseXX, key)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Login(ctx, name, "password-"+name); err != nil {
		return nil, err
	}
	return c, nil
}

// noRotationBeforePong checks that the server queued no KEY_ROTATE: it
// would come right after WELCOME, so before the PONG that answers a PING
// sent after login.
func noRotationBeforePong(t *testing.T, c *client.Conn) {
	t.Helper()
	if err := c.Ping(42); err != nil {
		t.Fatal(err)
	}
	for f := range c.Events() {
		switch f.(type) {
		case *codec.KeyRotate:
			t.Fatal("a connection on the new key got KEY_ROTATE")
		case *codec.Pong:
			return
		}
	}
	t.Fatal("connection ended before PONG")
}

// TestServerKeyRotation is issue 17 over real sockets: a client pinned to
// the server's key hears of the next key while connected, moves its pin
// with no one comparing keys, keeps working across a server restart
// during the overlap and after the old key is retired; a client still
// pinned to the old key is then refused with ERROR 78.
func TestServerKeyRotation(t *testing.T) {
	dir := t.TempDir()
	cfg := server.Config{Addr: "127.0.0.1:0", DataDir: dir}
	s, stop := startServer(t, cfg)
	addr := s.Addr().String()
	old := bytes.Clone(s.PublicKey())

	movedc := make(chan moved, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := client.Connect(ctx, client.Options{
		Addr: addr, Name: "alice", Password: "password-alice", Register: true, ServerKey: old,
		Backoff:     client.Backoff{Min: 10 * time.Millisecond, Max: 100 * time.Millisecond},
		OnServerKey: func(o, n []byte, from time.Time) { movedc <- moved{o, n, from} },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// bob's connections check each step without kicking alice's Client
	// (one session per user).
	rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer rcancel()
	bob, err := client.DialTransport(rctx, addr, codec.TransportNoiseXX, nil)
	if err != nil || !bytes.Equal(bob.ServerKey(), old) {
		t.Fatalf("before the rotation: %v", err)
	}
	if _, err := bob.Register(rctx, "bob", "password-bob"); err != nil {
		t.Fatal(err)
	}
	bob.Close()

	// Rotate: the connected client hears of the new key at once.
	keys, err := s.RotateKey()
	if err != nil {
		t.Fatal(err)
	}
	next := bytes.Clone(keys.Next.Public)
	rot := nextEvent[*codec.KeyRotate](t, cl.Events())
	if !bytes.Equal(rot.Old[:], old) || !bytes.Equal(rot.New[:], next) {
		t.Fatalf("KEY_ROTATE %x -> %x, want %x -> %x", rot.Old, rot.New, old, next)
	}
	select {
	case m := <-movedc:
		if !bytes.Equal(m.old, old) || !bytes.Equal(m.new, next) || m.from.After(time.Now()) {
			t.Fatalf("OnServerKey(%x, %x, %v)", m.old, m.new, m.from)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("OnServerKey was not called")
	}
	if !bytes.Equal(cl.ServerKey(), next) {
		t.Fatalf("the Client pins %x, want the new key %x", cl.ServerKey(), next)
	}

	// During the overlap both keys work; a login on the old key is told
	// after WELCOME, one on the new key is not.
	c, err := dialPinned(t, addr, old, "bob")
	if err != nil {
		t.Fatalf("old key during the overlap: %v", err)
	}
	if r := nextEvent[*codec.KeyRotate](t, c.Events()); client.VerifyRotation(old, r) != nil || !bytes.Equal(r.New[:], next) {
		t.Fatal("the login on the old key got no good KEY_ROTATE")
	}
	c.Close()
	c, err = dialPinned(t, addr, next, "bob")
	if err != nil || !bytes.Equal(c.ServerKey(), next) {
		t.Fatalf("new key during the overlap: %v, key %x", err, c.ServerKey())
	}
	noRotationBeforePong(t, c)
	c.Close()

	// A restart keeps both keys; the Client reconnects on its new pin.
	stop()
	cfg.Addr = addr
	s, stop = startServer(t, cfg)
	if k := s.Keys(); k.Next == nil || !bytes.Equal(k.Current.Public, old) || !bytes.Equal(k.Next.Public, next) {
		t.Fatalf("after a restart the server holds %+v", server.ReportKeys(k))
	}
	waitServerKey(t, cl, next)
	if _, err := dialPinned(t, addr, old, "bob"); err != nil {
		t.Fatalf("old key after a restart during the overlap: %v", err)
	}

	// Retire the old key: the Client still gets in, on the new key; a
	// client pinned to the old one is refused, for good, with ERROR 78.
	if _, err := s.RetireKey(); err != nil {
		t.Fatal(err)
	}
	stop()
	startServer(t, cfg)
	waitServerKey(t, cl, next)
	var e *codec.Error
	if _, err := dialPinned(t, addr, old, "bob"); !errors.As(err, &e) || e.Code != codec.CodeKeyRetired {
		t.Fatalf("old key after retirement: %v, want ERROR 78", err)
	}
	start := time.Now()
	_, err = client.Connect(ctx, client.Options{Addr: addr, Name: "alice", Password: "password-alice", ServerKey: old})
	if !errors.As(err, &e) || e.Code != codec.CodeKeyRetired {
		t.Fatalf("Client on the old key after retirement: %v, want ERROR 78", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("the Client retried a retired key")
	}
	if c, err := dialPinned(t, addr, nil, "bob"); err != nil || !bytes.Equal(c.ServerKey(), next) {
		t.Fatalf("trust on first use after retirement: %v, key %x", err, c.ServerKey())
	}
}

// waitServerKey waits until cl is connected on key.
func waitServerKey(t *testing.T, cl *client.Client, key []byte) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c := cl.Conn(); c != nil && bytes.Equal(c.ServerKey(), key) {
			return
		}
		time.Sleep(10 * time.Millisecond) // polling for the reconnect, with a deadline
	}
	t.Fatalf("the Client did not reconnect on %x (err %v)", key, cl.Err())
}

// TestForgedRotationIgnored: a KEY_ROTATE not signed by the key the
// session was made with leaves the pin where it was. The server here is
// a minimal Noise responder that holds the pinned key (so the channel is
// genuine) and sends a rotation signed by another key, then one that names
// the pinned key but a different new key than it signed, then a PRESENCE
// to mark the end.
func TestForgedRotationIgnored(t *testing.T) {
	pinned, _ := secure.GenerateKeypair()
	mallory, _ := secure.GenerateKeypair()
	target, _ := secure.GenerateKeypair()
	other, _ := secure.GenerateKeypair()
	from := time.Now().Add(-time.Minute)
	forged := &codec.KeyRotate{ValidFrom: uint64(from.UnixMilli())}
	copy(forged.Old[:], pinned.Public)
	copy(forged.New[:], target.Public)
	sig, _ := secure.Sign(mallory.Private, secure.RotationMessage(pinned.Public, target.Public, from), rand.Reader)
	copy(forged.Sig[:], sig)
	swapped := *forged // signed by the pinned key, but for another new key
	sig, _ = secure.Sign(pinned.Private, secure.RotationMessage(pinned.Public, other.Public, from), rand.Reader)
	copy(swapped.Sig[:], sig)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	served := make(chan error, 1)
	go func() { served <- fakeServer(ln, pinned, forged, &swapped, &codec.Presence{User: 7}) }()

	var calls int
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := client.Connect(ctx, client.Options{Addr: ln.Addr().String(), Name: "alice", Password: "password-alice",
		ServerKey: pinned.Public, OnServerKey: func(o, n []byte, from time.Time) { calls++ }})
	if err != nil {
		t.Fatal(err)
	}
	for f := range cl.Events() {
		if _, ok := f.(*codec.KeyRotate); ok {
			t.Fatal("a forged KEY_ROTATE was passed on")
		}
		if _, ok := f.(*codec.Presence); ok {
			break
		}
	}
	if !bytes.Equal(cl.ServerKey(), pinned.Public) || calls != 0 {
		t.Fatalf("after forged rotations the Client pins %x (OnServerKey called %d times)", cl.ServerKey(), calls)
	}
	cl.Close()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
}

// fakeServer answers one connection: the XX handshake with key, a
// WELCOME to whatever login comes, then frames; it returns when the
// client closes.
func fakeServer(ln net.Listener, key secure.Keypair, frames ...codec.Frame) error {
	nc, err := ln.Accept()
	if err != nil {
		return err
	}
	defer nc.Close()
	pre := make([]byte, codec.PreambleLen)
	if _, err := nc.Read(pre); err != nil {
		return err
	}
	hs, err := secure.Server(codec.TransportNoiseXX, key, pre)
	if err != nil {
		return err
	}
	var rec []byte
	for hs.Session() == nil {
		if rec, err = secure.ReadRecord(nc, rec); err != nil {
			return err
		}
		if err := hs.Read(rec); err != nil {
			return err
		}
		if hs.Session() == nil {
			msg, err := hs.Write(nil)
			if err != nil {
				return err
			}
			if _, err := nc.Write(msg); err != nil {
				return err
			}
		}
	}
	if rec, err = secure.ReadRecord(nc, rec); err != nil { // the LOGIN
		return err
	}
	out := (&codec.Welcome{User: 1, Keepalive: 180, Window: 256, MaxBody: 65000}).Append(nil)
	for _, f := range frames {
		out = f.Append(out)
	}
	sealed, err := hs.Session().Seal(nil, out)
	if err != nil {
		return err
	}
	if _, err := nc.Write(sealed); err != nil {
		return err
	}
	for { // until the client goes
		if _, err := secure.ReadRecord(nc, rec); err != nil {
			return nil
		}
	}
}
