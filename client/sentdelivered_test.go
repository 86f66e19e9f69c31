package client_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/account"
	"github.com/chatd/chatd/internal/server"
)

// TestSentDeliveredOption: a Client with Options.SentDelivered gets each
// message's outcome once, as SENT_DELIVERED when the recipient
// acknowledged it live, with no delivered RECEIPT for it and so no ACK of
// one: the server reads a SEND and the recipient's ACK per message.
func TestSentDeliveredOption(t *testing.T) {
	const n = 20
	s, _ := startServer(t, server.Config{
		Addr: "127.0.0.1:0", DataDir: t.TempDir(), Plaintext: true,
		Hashing:   account.Hashing{Time: 1, MemoryKiB: 64},
		CacheSize: 8 << 20, MemTableSize: 4 << 20,
		LiveWait: time.Hour, // every message waits for bob's ACK, however slow the machine
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	connect := func(name string, sd bool) *client.Client {
		cl, err := client.Connect(ctx, client.Options{Addr: s.Addr().String(), Name: name, Password: "password-" + name,
			Register: true, Plaintext: true, SentDelivered: sd})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close() })
		return cl
	}
	alice, bob := connect("alice", true), connect("bob", false)
	go func() {
		for range bob.Events() {
		}
	}()
	before := s.Stats().Conn.FramesIn
	want := map[codec.MsgID]bool{}
	for i := 0; i < n; i++ {
		id, err := alice.Send(bob.User(), []byte("hello"))
		if err != nil {
			t.Fatal(err)
		}
		want[id] = true
	}
	for len(want) > 0 {
		select {
		case f := <-alice.Events():
			switch f := f.(type) {
			case *codec.SentDelivered:
				if !want[f.ID] || f.Delivered < f.Time {
					t.Fatalf("SENT_DELIVERED %+v: not awaited, or delivered before it was sent", f)
				}
				delete(want, f.ID)
			case *codec.Sent, *codec.Receipt:
				t.Fatalf("%v %+v: every message was acknowledged live", f.Type(), f)
			}
		case <-ctx.Done():
			t.Fatalf("%d messages without an outcome", len(want))
		}
	}
	// n SENDs, OPTIONS, bob's ACKs (at most one per message), no receipt ACK.
	frames := s.Stats().Conn.FramesIn - before
	if frames > 2*n+1 {
		t.Fatalf("%d frames in for %d messages", frames, n)
	}
}

// TestSentDeliveredOldServer: a server written before OPTIONS answers it
// with ERROR 3 and closes (PROTOCOL.md section 9). The Client reconnects,
// does not ask again, and its message gets the plain SENT. The server
// here is a fake that speaks just enough of the protocol.
func TestSentDeliveredOldServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	firsts := make(chan codec.Type, 4) // the first frame after WELCOME, per connection
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			oldServer(nc, firsts)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := client.Connect(ctx, client.Options{Addr: ln.Addr().String(), Name: "alice", Password: "password-alice",
		Register: true, Plaintext: true, SentDelivered: true,
		Backoff: client.Backoff{Min: time.Millisecond, Max: 10 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	if f := <-firsts; f != codec.TypeOptions {
		t.Fatalf("first frame after WELCOME %v, want OPTIONS", f)
	}
	id, err := cl.Send(2, []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case f := <-cl.Events():
			if s, ok := f.(*codec.Sent); ok && s.ID == id {
				if f := <-firsts; f != codec.TypeSend {
					t.Fatalf("first frame after the reconnect's WELCOME %v, want SEND (no OPTIONS again)", f)
				}
				cl.Close()
				ln.Close()
				<-done
				return
			}
		case <-ctx.Done():
			t.Fatal("no SENT after the server refused OPTIONS")
		}
	}
}

// oldServer serves one connection as a server without OPTIONS would:
// WELCOME to any login, ERROR 3 and close for OPTIONS, SENT for a SEND.
// It reports each connection's first frame after WELCOME.
func oldServer(nc net.Conn, firsts chan<- codec.Type) {
	defer nc.Close()
	br := bufio.NewReader(nc)
	if _, err := io.ReadFull(br, make([]byte, codec.PreambleLen)); err != nil {
		return
	}
	read := func() (codec.Frame, error) {
		hdr := make([]byte, 4)
		if _, err := io.ReadFull(br, hdr); err != nil {
			return nil, err
		}
		b := make([]byte, 4+binary.BigEndian.Uint32(hdr))
		copy(b, hdr)
		if _, err := io.ReadFull(br, b[4:]); err != nil {
			return nil, err
		}
		return codec.Decode(b)
	}
	if _, err := read(); err != nil { // REGISTER or RESUME
		return
	}
	nc.Write((&codec.Welcome{User: 1, Token: codec.Token{1}, Keepalive: 180, Window: 64, MaxBody: 1000}).Append(nil))
	for first := true; ; first = false {
		f, err := read()
		if err != nil {
			return
		}
		if first {
			firsts <- f.Type()
		}
		switch f := f.(type) {
		case *codec.Options:
			nc.Write(codec.AppendError(nil, codec.CodeUnknownType, 0, nil, "unexpected frame 0x44"))
			return
		case *codec.Send:
			nc.Write((&codec.Sent{ID: f.ID, Time: 1}).Append(nil))
		}
	}
}
