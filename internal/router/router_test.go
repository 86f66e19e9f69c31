package router

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/offline"
)

// fakeConn is a connection queue without a socket: frames accumulate in
// out until the test takes them.
type fakeConn struct {
	mu     sync.Mutex
	out    []byte
	closed bool
	lazy   int // frames queued with EndLazy
	user   uint64
	sess   Session
}

func (c *fakeConn) Begin() ([]byte, bool) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, false
	}
	return c.out, true
}

func (c *fakeConn) End(buf []byte) bool {
	first := len(c.out) == 0 && len(buf) > 0
	c.out = buf
	c.mu.Unlock()
	return first
}

func (c *fakeConn) EndLazy(buf []byte) {
	c.out = buf
	c.lazy++
	c.mu.Unlock()
}

// take returns the seqs of the DELIVER frames queued since the last take.
func (c *fakeConn) take(t *testing.T) []uint64 {
	c.mu.Lock()
	b := c.out
	c.out = nil
	c.mu.Unlock()
	var seqs []uint64
	for len(b) > 0 {
		typ, body, rest, ok, err := codec.Split(b, 1<<20)
		if err != nil || !ok || typ != codec.TypeDeliver {
			t.Fatalf("bad frame in queue: type %v ok %v err %v", typ, ok, err)
		}
		var d codec.Deliver
		if err := d.Decode(body); err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, d.Seq)
		b = rest
	}
	return seqs
}

type batch struct{ n int }

func (b *batch) Add(*fakeConn) { b.n++ }

// fakeInbox holds entries in seq order per user, like offline.Inbox: a
// lane appends under the inbox's lock, then calls Applied.
type fakeInbox struct {
	mu      sync.Mutex
	ents    map[uint64][]offline.Entry
	expired map[uint64]bool // entry times that are expiring
	acked   []uint64

	// afterRead, if set, runs once in Read between taking the entries and
	// handing them over: a lane applying an entry while a drain reads.
	afterRead func()
}

func newInbox() *fakeInbox {
	return &fakeInbox{ents: make(map[uint64][]offline.Entry), expired: make(map[uint64]bool)}
}

func (in *fakeInbox) Read(user, after uint64, max int, fn func(*offline.Entry) bool) error {
	in.mu.Lock()
	var snap []offline.Entry
	for _, e := range in.ents[user] {
		if e.Seq > after && len(snap) < max {
			snap = append(snap, e)
		}
	}
	in.mu.Unlock()
	if f := in.afterRead; f != nil {
		in.afterRead = nil
		f()
	}
	for i := range snap {
		if !fn(&snap[i]) {
			break
		}
	}
	return nil
}

func (in *fakeInbox) AckEntries(user uint64, acked []offline.Acked, _ func(*offline.Stored) bool) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, a := range acked {
		in.acked = append(in.acked, a.Seq)
		es := in.ents[user]
		for i := range es {
			if es[i].Seq == a.Seq {
				in.ents[user] = append(es[:i:i], es[i+1:]...)
				break
			}
		}
	}
	return nil
}

// Cutoff makes Applied ask Expiring about every entry: the fake expires
// chosen times, not old ones.
func (in *fakeInbox) Cutoff() uint64 { return ^uint64(0) }

func (in *fakeInbox) Expiring(user, time uint64) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.expired[time]
}

// store is what a lane does: the entry becomes visible in the inbox, and
// the op goes to Applied.
func (in *fakeInbox) store(user, seq uint64, body []byte) *offline.Stored {
	in.mu.Lock()
	in.ents[user] = append(in.ents[user], offline.Entry{Seq: seq, Kind: offline.KindMessage, Time: seq, From: 9, Body: body})
	in.mu.Unlock()
	return &offline.Stored{To: user, Entry: offline.Entry{Kind: offline.KindMessage, Time: seq, From: 9, Body: body, Seq: seq}}
}

func newRouter(in Inbox, window, windowBytes int) *Router[*fakeConn] {
	r := New(Config[*fakeConn]{
		Window: window, WindowBytes: windowBytes,
		Session: func(c *fakeConn) *Session { return &c.sess },
		User:    func(c *fakeConn) uint64 { return c.user },
	})
	r.Use(in)
	return r
}

func login(t *testing.T, r *Router[*fakeConn], c *fakeConn) {
	t.Helper()
	if _, replaced := r.Login(c.user, c); replaced {
		t.Fatal("login replaced a session")
	}
	r.Drain(c, &batch{})
}

func equal(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestLivePushWhenCaughtUp(t *testing.T) {
	in := newInbox()
	r := newRouter(in, 8, 1<<20)
	c := &fakeConn{user: 1}
	login(t, r, c)
	if c.sess.backlog || r.Counters.Backlogged.Load() != 0 {
		t.Fatal("empty inbox: still backlogged after the login drain")
	}
	b := &batch{}
	r.Applied([]*offline.Stored{in.store(1, 1, []byte("a")), in.store(1, 2, []byte("b")), in.store(2, 1, []byte("other"))}, b)
	if got := c.take(t); !equal(got, []uint64{1, 2}) {
		t.Fatalf("pushed %v, want [1 2]", got)
	}
	if b.n != 1 {
		t.Fatalf("batch got %d adds, want 1 (the first bytes only)", b.n)
	}
	if r.Counters.Pushed.Load() != 2 || c.sess.inflightLen() != 2 {
		t.Fatalf("pushed %d, in flight %d", r.Counters.Pushed.Load(), c.sess.inflightLen())
	}
}

// TestReceiptLazyOnlyWhenStored: a stored receipt pushed to an online
// sender waits for company (EndLazy); the delivered receipt of a message
// acknowledged live is flushed with the caller's batch, since its SENT
// follows on the same turn (lazy, it cost the lazy flusher a thread
// wake-up per receipt to find the bytes already gone).
func TestReceiptLazyOnlyWhenStored(t *testing.T) {
	in := newInbox()
	r := newRouter(in, 8, 1<<20)
	c := &fakeConn{user: 1}
	login(t, r, c)
	receipt := func(seq uint64) *offline.Stored {
		return &offline.Stored{To: 1, Entry: offline.Entry{Kind: offline.KindReceipt, Time: seq, Seq: seq, ReceiptKind: codec.ReceiptDelivered, By: 2, IDs: make(codec.IDList, 16)}}
	}
	b := &batch{}
	r.Applied([]*offline.Stored{receipt(1)}, b)
	if c.lazy != 1 || b.n != 0 {
		t.Fatalf("stored receipt: %d lazy frames, %d batch adds; want 1 and 0", c.lazy, b.n)
	}
	c.out = nil // the lazy flusher's write

	b = &batch{}
	if !r.PushLiveTo(c, receipt(2), b) {
		t.Fatal("live receipt not pushed")
	}
	if c.lazy != 1 || b.n != 1 {
		t.Fatalf("live receipt: %d lazy frames, %d batch adds; want 1 (the stored one) and 1", c.lazy, b.n)
	}
	if c.sess.inflightLen() != 2 {
		t.Fatalf("%d entries in flight, want 2: a live receipt is acknowledged like any", c.sess.inflightLen())
	}
}

func TestBacklogDrainedInOrderAfterAck(t *testing.T) {
	in := newInbox()
	// Three entries wait before the login.
	for s := uint64(1); s <= 3; s++ {
		in.store(1, s, []byte("x"))
	}
	r := newRouter(in, 2, 1<<20)
	c := &fakeConn{user: 1}
	login(t, r, c)
	if got := c.take(t); !equal(got, []uint64{1, 2}) {
		t.Fatalf("login drain pushed %v, want [1 2] (window 2)", got)
	}
	// A live entry while the session is behind waits for the drain, behind 3.
	r.Applied([]*offline.Stored{in.store(1, 4, []byte("x"))}, &batch{})
	if got := c.take(t); len(got) != 0 {
		t.Fatalf("pushed %v ahead of the backlog", got)
	}
	drain, err := r.Ack(c, 2, &batch{})
	if err != nil || !drain {
		t.Fatalf("ack: drain %v err %v", drain, err)
	}
	r.Drain(c, &batch{})
	if got := c.take(t); !equal(got, []uint64{3, 4}) {
		t.Fatalf("drain after ack pushed %v, want [3 4]", got)
	}
	// The read that filled the window could not tell that the inbox ended
	// there: the drain after this ACK finds nothing and ends the backlog.
	if drain, _ := r.Ack(c, 4, &batch{}); !drain {
		t.Fatal("backlog not settled, yet Ack asks for no drain")
	}
	r.Drain(c, &batch{})
	if c.sess.inflight != nil || c.sess.backlog || r.Counters.Backlogged.Load() != 0 {
		t.Fatal("window not returned or backlog left on")
	}
	if !equal(in.acked, []uint64{1, 2, 3, 4}) {
		t.Fatalf("inbox acked %v", in.acked)
	}
}

func TestAckBeyondAndStale(t *testing.T) {
	in := newInbox()
	r := newRouter(in, 8, 1<<20)
	c := &fakeConn{user: 1}
	login(t, r, c)
	r.Applied([]*offline.Stored{in.store(1, 1, nil), in.store(1, 2, nil)}, &batch{})
	if _, err := r.Ack(c, 3, &batch{}); !errors.Is(err, ErrAckBeyond) {
		t.Fatalf("ack 3 of 2: %v", err)
	}
	if _, err := r.Ack(c, 2, &batch{}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Ack(c, 1, &batch{}); err != nil || len(in.acked) != 2 {
		t.Fatalf("stale ack: err %v, acked %v", err, in.acked)
	}
}

func TestWindowBytes(t *testing.T) {
	in := newInbox()
	r := newRouter(in, 8, 100)
	c := &fakeConn{user: 1}
	login(t, r, c)
	big := make([]byte, 150)
	// An empty window takes any entry; the next waits for the ACK.
	r.Applied([]*offline.Stored{in.store(1, 1, big), in.store(1, 2, []byte("small"))}, &batch{})
	if got := c.take(t); !equal(got, []uint64{1}) {
		t.Fatalf("pushed %v, want [1]", got)
	}
	if !c.sess.backlog {
		t.Fatal("entry 2 held back but no backlog recorded")
	}
	if drain, _ := r.Ack(c, 1, &batch{}); !drain {
		t.Fatal("ack did not ask for the drain")
	}
	r.Drain(c, &batch{})
	if got := c.take(t); !equal(got, []uint64{2}) {
		t.Fatalf("drain pushed %v, want [2]", got)
	}
}

func TestExpiringAndClosedNotPushed(t *testing.T) {
	in := newInbox()
	r := newRouter(in, 8, 1<<20)
	c := &fakeConn{user: 1}
	login(t, r, c)
	in.expired[1] = true
	r.Applied([]*offline.Stored{in.store(1, 1, nil)}, &batch{})
	if got := c.take(t); len(got) != 0 {
		t.Fatalf("expiring entry pushed: %v", got)
	}
	r.Remove(1, c)
	r.Closed(c)
	// A lane that looked the session up before Remove.
	r.Applied([]*offline.Stored{in.store(1, 2, nil)}, &batch{})
	r.Drain(c, &batch{})
	if got := c.take(t); len(got) != 0 {
		t.Fatalf("pushed to a closed session: %v", got)
	}
	if _, replaced := r.Login(1, c); replaced || c.sess.backlog || r.Counters.Backlogged.Load() != 0 {
		t.Fatal("a login that finished after Closed left a backlog behind")
	}
}

// TestLaneDuringDrainRead: a lane applies an entry after the drain's read
// began, sees the session behind and leaves the entry to the drain. The
// read came back short, but the drain must not declare the session caught
// up: the lane recorded a later seq (lastStored), so it reads again.
func TestLaneDuringDrainRead(t *testing.T) {
	in := newInbox()
	in.store(1, 1, []byte("offline"))
	r := newRouter(in, 8, 1<<20)
	c := &fakeConn{user: 1}
	in.afterRead = func() { r.Applied([]*offline.Stored{in.store(1, 2, []byte("live"))}, &batch{}) }
	login(t, r, c)
	if got := c.take(t); !equal(got, []uint64{1, 2}) {
		t.Fatalf("login drain pushed %v, want [1 2]", got)
	}
	if c.sess.backlog {
		t.Fatal("backlog left on")
	}
}

// TestBehindDuringDrainRead: a session whose inbox is on another node is
// marked Behind (it attaches to its home again) while a drain that began
// before is reading. The home then numbers its pushes from 0, so a push
// cannot show the entries the read missed; the drain must not declare
// the session caught up, or the next push goes out live ahead of them
// (seen in a stressed kill -9 run: two messages delivered 140 later).
func TestBehindDuringDrainRead(t *testing.T) {
	in := newInbox()
	in.store(1, 1, []byte("old"))
	r := newRouter(in, 8, 1<<20)
	c := &fakeConn{user: 1}
	if _, replaced := r.Login(c.user, c); replaced {
		t.Fatal("login replaced a session")
	}
	in.afterRead = func() {
		// Meanwhile: entries 2 and 3 land at the home, their pushes go to
		// an older session, and this one is marked behind to attach again.
		in.store(1, 2, []byte("missed"))
		in.store(1, 3, []byte("missed"))
		r.Behind(c)
	}
	r.Drain(c, &batch{}) // reads again after the Behind: 2 and 3 now, or at the next drain
	got := c.take(t)
	// The home's first push after the attach: prev 0, entry 4.
	if drain := r.AppliedFrom(1, 0, []*offline.Stored{in.store(1, 4, []byte("new"))}, &batch{}); drain {
		r.Drain(c, &batch{})
	}
	if got = append(got, c.take(t)...); !equal(got, []uint64{1, 2, 3, 4}) {
		t.Fatalf("pushed %v, want [1 2 3 4] in order", got)
	}
}

// TestOfflineToOnlineRace runs a lane that stores and applies entries
// while the recipient logs in, drains and acknowledges on its own
// goroutine (the event loop): every entry arrives once, in seq order,
// whether its lane pushed it or a drain read it.
func TestOfflineToOnlineRace(t *testing.T) {
	for round := 0; round < 20; round++ {
		const n = 400
		in := newInbox()
		r := newRouter(in, 16, 1<<20)
		c := &fakeConn{user: 1}
		start := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // the lane
			defer wg.Done()
			for s := uint64(1); s <= n; s++ {
				if s == uint64(round*10) {
					close(start)
				}
				r.Applied([]*offline.Stored{in.store(1, s, []byte("m"))}, &batch{})
			}
			if round == 0 {
				close(start) // round 0: every entry is stored before the login
			}
		}()
		<-start
		login(t, r, c)
		var got []uint64
		deadline := time.Now().Add(10 * time.Second)
		for len(got) < n && time.Now().Before(deadline) {
			seqs := c.take(t)
			if len(seqs) == 0 {
				time.Sleep(time.Millisecond) // the lane is still storing
				continue
			}
			got = append(got, seqs...)
			if drain, err := r.Ack(c, seqs[len(seqs)-1], &batch{}); err != nil {
				t.Fatal(err)
			} else if drain {
				r.Drain(c, &batch{})
			}
		}
		wg.Wait()
		if len(got) != n {
			t.Fatalf("round %d: got %d of %d entries", round, len(got), n)
		}
		for i, s := range got {
			if s != uint64(i+1) {
				t.Fatalf("round %d: entry %d has seq %d (skipped, repeated or out of order)", round, i, s)
			}
		}
		if c.sess.backlog || r.Counters.Backlogged.Load() != 0 {
			t.Fatalf("round %d: caught up but backlog left on", round)
		}
	}
}
