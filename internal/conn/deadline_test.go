package conn

import (
	"bufio"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chatd/codec"
)

// TestDeadlinesAtScale opens thousands of connections that go silent (no
// bytes at all, half a preamble as a slowloris would, or authenticated
// and then quiet) and checks that each is closed no earlier than its
// deadline and within the bound PROTOCOL.md section 7 states: one sweep
// interval later, plus slack for closing them all at once on a loaded
// test machine. CHATD_DEADLINE_SOCKETS and CHATD_DEADLINE_TIMEOUT (for
// example 5000 and 10s) measure the defaults at scale.
func TestDeadlinesAtScale(t *testing.T) {
	n, timeout := 1500, time.Second
	if v, err := strconv.Atoi(os.Getenv("CHATD_DEADLINE_SOCKETS")); err == nil && v > 0 {
		n = v
	}
	if v, err := time.ParseDuration(os.Getenv("CHATD_DEADLINE_TIMEOUT")); err == nil && v > 0 {
		timeout = v
	}
	if testing.Short() {
		n = 200
	}
	const sweep = 250 * time.Millisecond
	slack := 500 * time.Millisecond
	if raceEnabled {
		slack = time.Second
	}
	auth, keep := timeout, timeout+timeout/2
	// Two servers, so that each kind meets only the deadline it is about:
	// on a loaded machine an authenticating connection could otherwise
	// meet the auth deadline before its PING is handled.
	s, h := startServer(t, Config{AuthTimeout: auth, Keepalive: 10 * keep, SweepInterval: sweep})
	sk, hk := startServer(t, Config{AuthTimeout: 10 * keep, Keepalive: keep, SweepInterval: sweep})

	type result struct {
		kind    int // 0 silent, 1 half a preamble, 2 authenticated then silent
		elapsed time.Duration
		err     error
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	wait := func(i int, nc net.Conn, r io.Reader, start time.Time) {
		defer wg.Done()
		defer nc.Close()
		nc.SetReadDeadline(time.Now().Add(keep + 30*time.Second))
		_, err := io.Copy(io.Discard, r)
		results[i].elapsed, results[i].err = time.Since(start), err
	}
	for i := 0; i < n; i++ {
		kind := i % 3
		results[i].kind = kind
		start := time.Now()
		addr := s.Addr().String()
		if kind == 2 {
			addr = sk.Addr().String()
		}
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		var r io.Reader = nc
		switch kind {
		case 1:
			nc.Write(codec.AppendPreamble(nil, codec.TransportPlain)[:4])
		case 2:
			br := bufio.NewReader(nc)
			start = time.Now() // the server's last-read stamp is later than this
			nc.Write((&codec.Ping{Nonce: 1}).Append(codec.AppendPreamble(nil, codec.TransportPlain)))
			if tp, _ := readFrame(t, br); tp != codec.TypePong {
				t.Fatalf("conn %d: got %v, want PONG", i, tp)
			}
			r = br
		}
		wg.Add(1)
		go wait(i, nc, r, start)
	}
	wg.Wait()

	var byKind [3][]time.Duration
	for i, r := range results {
		if r.err != nil {
			t.Fatalf("conn %d: %v", i, r.err)
		}
		byKind[r.kind] = append(byKind[r.kind], r.elapsed)
	}
	for kind, name := range []string{"silent", "half preamble", "authenticated, then silent"} {
		d := byKind[kind]
		slices.Sort(d)
		deadline := auth
		if kind == 2 {
			deadline = keep
		}
		p99 := d[len(d)*99/100]
		t.Logf("%s: %d conns, deadline %v: closed after min %v, p99 %v, max %v", name, len(d), deadline,
			d[0].Round(time.Millisecond), p99.Round(time.Millisecond), d[len(d)-1].Round(time.Millisecond))
		if d[0] < deadline {
			t.Errorf("%s: a connection was closed after %v, before its %v deadline", name, d[0], deadline)
		}
		if max := d[len(d)-1]; max > deadline+sweep+slack {
			t.Errorf("%s: a connection was closed after %v, past %v + %v sweep + %v slack", name, max, deadline, sweep, slack)
		}
	}
	waitFor(t, func() bool { return h.closed.Load()+hk.closed.Load() == int64(n) })
	// The servers' own view, without accept lag and the test's scheduling:
	// from accept (or the last input) to Closed.
	h.mu.Lock()
	late := slices.Clone(h.late)
	h.mu.Unlock()
	hk.mu.Lock()
	late = append(late, hk.late...)
	hk.mu.Unlock()
	slices.Sort(late)
	t.Logf("server side, accept or last input to Closed: min %v, p99 %v, max %v past the deadline",
		late[0], late[len(late)*99/100], late[len(late)-1])
	if late[0] < 0 || late[len(late)-1] > sweep+slack {
		t.Errorf("server side: closed between %v and %v past the deadline, want 0 to %v + %v slack", late[0], late[len(late)-1], sweep, slack)
	}
	st, stk := s.Snapshot(), sk.Snapshot()
	// Half a preamble meets the read timeout or the auth timeout, whichever is shorter.
	if want := uint64(n - n/3); st.AuthTimeouts+st.ReadTimeouts != want || stk.IdleClosed != uint64(n/3) ||
		st.IdleClosed != 0 || stk.AuthTimeouts+stk.ReadTimeouts != 0 {
		t.Errorf("counted %d auth and %d read timeouts and %d idle (and %d, %d, %d on the keepalive server), want %d, 0 and %d",
			st.AuthTimeouts, st.ReadTimeouts, st.IdleClosed, stk.AuthTimeouts, stk.ReadTimeouts, stk.IdleClosed, want, n/3)
	}
}

// TestOlderNeverWraps: a connection stamped just after the sweeper read
// the clock is not ancient. Unsigned arithmetic once made it 4 billion ms
// old, and the sweep kicked a connection that had just sent a frame (or
// closed one accepted that instant as unauthenticated too long).
func TestOlderNeverWraps(t *testing.T) {
	for _, tc := range []struct {
		now, stamp, limit uint32
		want              bool
	}{
		{now: 1000, stamp: 1001, limit: 10, want: false}, // stamped after now
		{now: 1000, stamp: 1000, limit: 10, want: false},
		{now: 1010, stamp: 1000, limit: 10, want: false}, // exactly the limit: not more
		{now: 1011, stamp: 1000, limit: 10, want: true},
		{now: 5, stamp: 0, limit: 10, want: false},
		{now: 20, stamp: ^uint32(0) - 5, limit: 10, want: true}, // across the clock's wrap: 26 ms
		{now: 2, stamp: ^uint32(0) - 5, limit: 10, want: false}, // across the wrap: 8 ms
	} {
		if got := older(tc.now, tc.stamp, tc.limit); got != tc.want {
			t.Errorf("older(now %d, stamp %d, limit %d) = %v, want %v", tc.now, tc.stamp, tc.limit, got, tc.want)
		}
	}
}
