package server

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
)

// TestIdleConnectionsNoGoroutines holds 2,000 authenticated idle
// connections and checks the server spends no goroutine on them.
func TestIdleConnectionsNoGoroutines(t *testing.T) {
	s := startServer(t, testConfig(t))
	c0 := register(t, s, "alice")
	tok := c0.Welcome.Token
	c0.Close()
	waitFor(t, func() bool { return s.sessions.Len() == 0 })
	base := settledGoroutines(t)

	// Raw sockets keep the test's own goroutine count flat. Each registers
	// its own user (one live session per user), a few at a time so as to
	// stay inside the server's password-hashing queue.
	const n, wave = 2000, 8
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, nc := range conns {
			nc.Close()
		}
	}()
	_ = tok
	for i := 0; i < n; i += wave {
		for j := i; j < i+wave; j++ {
			nc, err := net.Dial("tcp", s.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, nc)
			out := codec.AppendPreamble(nil, codec.TransportPlain)
			out = (&codec.Register{Credentials: codec.Credentials{Name: []byte(fmt.Sprintf("idle%d", j)), Password: []byte("password1")}}).Append(out)
			if _, err := nc.Write(out); err != nil {
				t.Fatal(err)
			}
		}
		for j := i; j < i+wave; j++ {
			nc := conns[j]
			nc.SetReadDeadline(time.Now().Add(5 * time.Second))
			var hdr [5]byte
			if _, err := io.ReadFull(nc, hdr[:]); err != nil || codec.Type(hdr[4]) != codec.TypeWelcome {
				t.Fatalf("conn %d: no WELCOME (%v, type %v)", j, err, codec.Type(hdr[4]))
			}
			rest := make([]byte, binary.BigEndian.Uint32(hdr[:4])-1)
			io.ReadFull(nc, rest)
		}
	}
	waitFor(t, func() bool { return s.sessions.Len() == n })
	// Pool workers and hash goroutines finish on their own time: poll until
	// the count is down, and fail only if it never gets there.
	g := 0
	poll(10*time.Second, func() bool { g = runtime.NumGoroutine(); return g <= base+20 })
	t.Logf("goroutines: %d before, %d with %d idle authenticated connections", base, g, n)
	if g > base+20 {
		t.Fatalf("%d goroutines with %d idle connections (started at %d)", g, n, base)
	}
}

// settledGoroutines polls the goroutine count until it has stopped moving
// (the same over 5 reads 20 ms apart) and returns it; a count that keeps
// changing for 10 s fails the test.
func settledGoroutines(t *testing.T) int {
	t.Helper()
	prev, same := runtime.NumGoroutine(), 0
	waitFor(t, func() bool {
		runtime.GC()
		time.Sleep(20 * time.Millisecond) // the sampling period, not a wait for an event
		g := runtime.NumGoroutine()
		if g == prev {
			same++
		} else {
			prev, same = g, 0
		}
		return same >= 5
	})
	return prev
}

// TestManySendersOneRecipient has 16 clients send to one recipient at once
// and checks every message arrives intact, in each sender's order.
func TestManySendersOneRecipient(t *testing.T) {
	s := startServer(t, testConfig(t))
	bob := register(t, s, "bob")
	const senders, per = 16, 300
	var wg sync.WaitGroup
	from := map[uint64]int{}
	var mu sync.Mutex
	for i := 0; i < senders; i++ {
		c := register(t, s, fmt.Sprintf("sender%d", i))
		mu.Lock()
		from[c.Welcome.User] = i
		mu.Unlock()
		wg.Add(1)
		go func(c *client.Conn, i int) {
			defer wg.Done()
			for j := 0; j < per; j++ {
				if _, err := c.Send(bob.Welcome.User, []byte(fmt.Sprintf("%d:%d", i, j)), j%10 == 9); err != nil {
					t.Error(err)
					return
				}
			}
		}(c, i)
	}
	want := make([]int, senders) // per sender, the next message's number
	for got := 0; got < senders*per; got++ {
		d := next[*codec.Deliver](t, bob)
		i := from[d.From]
		if w := fmt.Sprintf("%d:%d", i, want[i]); string(d.Body) != w {
			t.Fatalf("from sender %d: got %q, want %q", i, d.Body, w)
		}
		want[i]++
		if got%64 == 63 {
			bob.Ack(d.Seq, true)
		}
	}
	wg.Wait()
}

// TestBadInputLeavesOthersServed sends garbage, an oversized length and a
// truncated frame on separate connections: each gets ERROR and a close or
// just a close, and a chat between two others carries on.
func TestBadInputLeavesOthersServed(t *testing.T) {
	cfg := testConfig(t)
	cfg.ReadTimeout = 500 * time.Millisecond
	s := startServer(t, cfg)
	alice := register(t, s, "alice")
	bob := register(t, s, "bob")

	pre := codec.AppendPreamble(nil, codec.TransportPlain)
	cases := []struct {
		name  string
		bytes []byte
		code  codec.Code // 0: expect a close without an ERROR
	}{
		{"garbage preamble", []byte("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), codec.CodeBadPreamble},
		{"oversized length", append(pre, 0x10, 0, 0, 0, 0x10), codec.CodeTooLarge},
		{"malformed LOGIN", append(pre, 0, 0, 0, 3, 0x02, 5, 'a'), codec.CodeMalformed},
		{"server frame from client", append(pre, (&codec.Sent{}).Append(nil)...), codec.CodeWrongDirection},
		{"unknown type", append(pre, 0, 0, 0, 1, 0x6e), codec.CodeUnknownType},
		{"truncated frame", append(pre, 0, 0, 0, 40, 0x10, 1, 2, 3), 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			nc, err := net.Dial("tcp", s.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			nc.Write(tc.bytes)
			nc.SetReadDeadline(time.Now().Add(5 * time.Second))
			br := bufio.NewReader(nc)
			if tc.code != 0 {
				var hdr [4]byte
				if _, err := io.ReadFull(br, hdr[:]); err != nil {
					t.Fatalf("no ERROR frame: %v", err)
				}
				b := make([]byte, binary.BigEndian.Uint32(hdr[:]))
				io.ReadFull(br, b)
				var e codec.Error
				if codec.Type(b[0]) != codec.TypeError || e.Decode(b[1:]) != nil || e.Code != tc.code {
					t.Fatalf("got %v, want ERROR %v", codec.Type(b[0]), tc.code)
				}
			}
			if _, err := br.ReadByte(); err != io.EOF {
				t.Fatalf("connection not closed: %v", err)
			}
			// Others are still served.
			id, _ := alice.Send(bob.Welcome.User, []byte(tc.name), true)
			if d := next[*codec.Deliver](t, bob); d.ID != id {
				t.Fatalf("bob got %v", d.ID)
			}
			bob.Ack(0, false)
		})
	}
	_ = context.Background
}
