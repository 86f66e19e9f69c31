package admission

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatd/chatd/codec"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// refuse calls Admit, which must refuse, and decodes its GOAWAY.
func refuse(t *testing.T, c *Control) codec.Goaway {
	t.Helper()
	ok, b := c.Admit()
	if ok {
		t.Fatal("admitted; want GOAWAY")
	}
	return decode(t, b)
}

func decode(t *testing.T, b []byte) codec.Goaway {
	t.Helper()
	var g codec.Goaway
	if len(b) < 5 || codec.Type(b[4]) != codec.TypeGoaway {
		t.Fatalf("refusal is not a GOAWAY frame: % x", b)
	}
	if err := g.Decode(b[5:]); err != nil {
		t.Fatalf("refusal: %v", err)
	}
	return g
}

// TestCapacity: at MaxConns open connections the next one gets GOAWAY
// capacity with the configured delay, /readyz's reason says so, and one
// connection fewer lets the next in.
func TestCapacity(t *testing.T) {
	var open atomic.Int64
	c := New(Config{MaxConns: 2, RetryAfter: 300 * time.Millisecond, Conns: func() int { return int(open.Load()) }})
	defer c.Close()
	open.Store(2)
	if g := refuse(t, c); g.Reason != codec.GoawayCapacity || g.RetryAfter != 300 {
		t.Fatalf("at capacity: %+v", g)
	}
	if why := c.NotReady(); why != "at connection capacity" {
		t.Fatalf("NotReady at capacity: %q", why)
	}
	if r := c.Rejected(); r != (Rejects{Capacity: 1}) {
		t.Fatalf("rejects %+v", r)
	}
	open.Store(1)
	if ok, b := c.Admit(); !ok || b != nil {
		t.Fatalf("under capacity: %v % x", ok, b)
	}
	if why := c.NotReady(); why != "" {
		t.Fatalf("NotReady under capacity: %q", why)
	}
}

// TestMemoryWatermark: once the sampler reads RSS above the watermark new
// connections get GOAWAY overloaded; once below, they get in again.
func TestMemoryWatermark(t *testing.T) {
	var rss atomic.Uint64
	c := New(Config{MaxConns: 10, Watermark: 1000, Conns: func() int { return 0 },
		RSS: rss.Load, Sample: time.Millisecond})
	defer c.Close()
	rss.Store(2000)
	waitFor(t, "refusal above the watermark", func() bool { return c.NotReady() == "memory above watermark" })
	if g := refuse(t, c); g.Reason != codec.GoawayOverloaded {
		t.Fatalf("above watermark: %+v", g)
	}
	if r := c.Rejected(); r != (Rejects{Memory: 1}) {
		t.Fatalf("rejects %+v", r)
	}
	rss.Store(500)
	waitFor(t, "admission below the watermark", func() bool { return c.NotReady() == "" })
	if ok, _ := c.Admit(); !ok {
		t.Fatal("refused below the watermark")
	}
}

// TestAcceptRate: a burst past the bucket is refused with GOAWAY
// overloaded and counted; /readyz does not report the rate (a probe must
// not spend a token, and a busy second is not "not ready").
func TestAcceptRate(t *testing.T) {
	c := New(Config{MaxConns: 1 << 20, AcceptRate: 10, Conns: func() int { return 0 }}) // bucket 100, refills 10/s
	defer c.Close()
	start := time.Now()
	admitted, refused := 0, 0
	for range 150 {
		if ok, b := c.Admit(); ok {
			admitted++
		} else {
			refused++
			if g := decode(t, b); g.Reason != codec.GoawayOverloaded {
				t.Fatalf("over the rate: %+v", g)
			}
		}
	}
	refill := int(time.Since(start).Seconds()*10) + 1
	if admitted < 100 || admitted > 100+refill {
		t.Fatalf("admitted %d of 150 at 10/s with a bucket of 100 (refill allowance %d)", admitted, refill)
	}
	if r := c.Rejected(); r.Rate != uint64(refused) || r.Capacity != 0 || r.Memory != 0 {
		t.Fatalf("rejects %+v, refused %d", r, refused)
	}
	if why := c.NotReady(); why != "" {
		t.Fatalf("NotReady after a burst: %q", why)
	}
}

// TestStop: a draining server refuses everyone with GOAWAY shutdown,
// without counting it as a rejection.
func TestStop(t *testing.T) {
	c := New(Config{MaxConns: 10, RetryAfter: 2 * time.Second, Conns: func() int { return 0 }})
	defer c.Close()
	c.Stop()
	if g := refuse(t, c); g.Reason != codec.GoawayShutdown || g.RetryAfter != 2000 {
		t.Fatalf("stopping: %+v", g)
	}
	if why := c.NotReady(); why != "shutting down" {
		t.Fatalf("NotReady while stopping: %q", why)
	}
	if r := c.Rejected(); r != (Rejects{}) {
		t.Fatalf("rejects %+v", r)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestSampleWait: RSS is read every Sample from half the watermark up,
// four times less often below it, and never without a watermark.
func TestSampleWait(t *testing.T) {
	c := &Control{cfg: Config{Watermark: 1000, Sample: time.Millisecond}}
	for rss, want := range map[uint64]time.Duration{0: 4 * time.Millisecond, 499: 4 * time.Millisecond,
		500: time.Millisecond, 2000: time.Millisecond} {
		if got := c.sampleWait(rss); got != want {
			t.Errorf("rss %d: wait %v, want %v", rss, got, want)
		}
	}
	var reads atomic.Int32
	off := New(Config{MaxConns: 10, Conns: func() int { return 0 }, Sample: time.Millisecond,
		RSS: func() uint64 { reads.Add(1); return 0 }})
	deadline := time.Now().Add(20 * time.Millisecond)
	for time.Now().Before(deadline) && reads.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	off.Close()
	if n := reads.Load(); n != 0 {
		t.Fatalf("RSS read %d times without a watermark", n)
	}
}
