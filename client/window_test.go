package client_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
)

// fakeConn is the server's end of one plaintext connection, driven by
// the test.
type fakeConn struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

// acceptLogin accepts a connection, reads its preamble and its login
// (LOGIN, REGISTER or RESUME) and answers WELCOME.
func acceptLogin(t *testing.T, ln net.Listener) *fakeConn {
	t.Helper()
	nc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	fc := &fakeConn{t: t, nc: nc, br: bufio.NewReader(nc)}
	if _, err := io.ReadFull(fc.br, make([]byte, codec.PreambleLen)); err != nil {
		t.Fatal(err)
	}
	switch f := fc.next(time.Now().Add(10 * time.Second)); f.(type) {
	case *codec.Login, *codec.Register, *codec.Resume:
	default:
		t.Fatalf("got %v before WELCOME", f.Type())
	}
	fc.write(&codec.Welcome{User: 1, Token: codec.Token{1}, Keepalive: 180, Window: 256, MaxBody: 65000})
	return fc
}

// next reads the next frame, failing the test if none came by deadline.
func (fc *fakeConn) next(deadline time.Time) codec.Frame {
	fc.t.Helper()
	f, err := fc.read(deadline)
	if err != nil {
		fc.t.Fatal(err)
	}
	return f
}

func (fc *fakeConn) read(deadline time.Time) (codec.Frame, error) {
	fc.nc.SetReadDeadline(deadline)
	var hdr [4]byte
	if _, err := io.ReadFull(fc.br, hdr[:]); err != nil {
		return nil, err
	}
	n, err := codec.ParseHeader(hdr[:], 0)
	if err != nil {
		return nil, err
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(fc.br, b); err != nil {
		return nil, err
	}
	return codec.DecodeBody(codec.Type(b[0]), b[1:])
}

func (fc *fakeConn) write(fs ...codec.Frame) {
	fc.t.Helper()
	var out []byte
	for _, f := range fs {
		out = f.Append(out)
	}
	if _, err := fc.nc.Write(out); err != nil {
		fc.t.Fatal(err)
	}
}

// sends reads n SENDs and checks that they carry messages first, first+1...
// and whether they are flagged DUP.
func (fc *fakeConn) sends(n, first int, dup bool) []codec.MsgID {
	fc.t.Helper()
	var ids []codec.MsgID
	for i := range n {
		f := fc.next(time.Now().Add(10 * time.Second))
		s, ok := f.(*codec.Send)
		if !ok {
			fc.t.Fatalf("got %v, want SEND of m%d", f.Type(), first+i)
		}
		if want := fmt.Sprintf("m%d", first+i); string(s.Body) != want || (s.Flags&codec.FlagDup != 0) != dup {
			fc.t.Fatalf("got SEND %q (flags %v), want %s with DUP %v", s.Body, s.Flags, want, dup)
		}
		ids = append(ids, s.ID)
	}
	return ids
}

func sent(ids []codec.MsgID) []codec.Frame {
	var fs []codec.Frame
	for _, id := range ids {
		fs = append(fs, &codec.Sent{ID: id})
	}
	return fs
}

// A Client keeps at most SendWindow messages unanswered on its connection:
// the rest wait, in order, for SENTs to make room, and after a reconnect
// it resends a window at a time (DUP only on what it wrote before), not
// its whole outbox at once.
func TestSendWindow(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	first := make(chan *fakeConn, 1)
	go func() { first <- acceptLogin(t, ln) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := client.Connect(ctx, client.Options{Addr: ln.Addr().String(), Name: "alice", Password: "password-alice",
		Plaintext: true, SendWindow: 4, Backoff: client.Backoff{Min: 10 * time.Millisecond, Max: 50 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	fc := <-first
	for i := range 10 {
		if _, err := cl.Send(2, []byte(fmt.Sprintf("m%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	// Send writes what fits before it returns, and on loopback the bytes
	// are in this end's buffer once written: a fifth SEND would be here.
	ids := fc.sends(4, 0, false)
	if f, err := fc.read(time.Now().Add(100 * time.Millisecond)); err == nil {
		t.Fatalf("a fifth message went out with four unanswered: %v", f)
	}
	fc.write(sent(ids[:2])...)
	fc.sends(2, 4, false) // m4 and m5 take the room

	// The connection drops: the six unanswered go again, four first, as
	// resends; the rest once those are answered, as first sends.
	fc.nc.Close()
	fc = acceptLogin(t, ln)
	fc.write(sent(fc.sends(4, 2, true))...)
	fc.write(sent(fc.sends(4, 6, false))...)
	for cl.Pending() > 0 {
		select {
		case <-ctx.Done():
			t.Fatalf("%d messages still wait for SENT", cl.Pending())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// A connection the server closes right after the login does not start
// the backoff over: the Client waits longer each time, as after failed
// attempts, instead of logging in again at once, again and again.
func TestShortConnectionsBackOff(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	waits := make(chan time.Duration, 16)
	connected := make(chan struct{}, 16)
	accepted := make(chan *fakeConn, 1)
	go func() { accepted <- acceptLogin(t, ln) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := client.Connect(ctx, client.Options{Addr: ln.Addr().String(), Name: "alice", Password: "password-alice",
		Plaintext: true, Backoff: client.Backoff{Min: 10 * time.Millisecond, Max: time.Second},
		OnStatus: func(s client.Status) {
			switch s.State {
			case client.StateWaiting:
				waits <- s.Wait
			case client.StateConnected:
				connected <- struct{}{}
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	fc := <-accepted
	for _, want := range []time.Duration{10, 20, 40, 80} {
		<-connected // closed after the Client took the WELCOME, not during its login
		fc.nc.Close()
		select {
		case got := <-waits:
			if got != want*time.Millisecond {
				t.Fatalf("waits %v after a connection closed at once, want %v", got, want*time.Millisecond)
			}
		case <-ctx.Done():
			t.Fatal("the Client did not notice its connection closed")
		}
		fc = acceptLogin(t, ln)
	}
}

// Refused messages go again in the order they were first sent, per
// recipient, whatever their own backoffs say: the server refuses a later
// one until the first refused comes again. Here m0 was refused twice
// (its next try in 2 Min) and m1 once (Min): m1 waits for m0.
func TestResendKeepsOrder(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	first := make(chan *fakeConn, 1)
	go func() { first <- acceptLogin(t, ln) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := client.Connect(ctx, client.Options{Addr: ln.Addr().String(), Name: "alice", Password: "password-alice",
		Plaintext: true, Backoff: client.Backoff{Min: 50 * time.Millisecond, Max: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	fc := <-first
	for i := range 2 {
		if _, err := cl.Send(2, []byte(fmt.Sprintf("m%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	ids := fc.sends(2, 0, false)
	busy := func(id codec.MsgID) *codec.Error { return &codec.Error{Code: codec.CodeBusy, ID: id} }
	fc.write(busy(ids[0]))
	fc.sends(1, 0, true)
	fc.write(busy(ids[0]), busy(ids[1]))
	fc.sends(1, 0, true) // m1's own backoff was due first
	fc.sends(1, 1, true)
	fc.write(sent(ids)...)
	for cl.Pending() > 0 {
		select {
		case <-ctx.Done():
			t.Fatalf("%d messages still wait for SENT", cl.Pending())
		case <-time.After(10 * time.Millisecond):
		}
	}
}
