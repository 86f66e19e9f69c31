package bench

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// evenSends returns n sends evenly spread at rate msgs/s (send times in
// us), each with latency base.
func evenSends(n, rate int, base int64) (at, lat []int64) {
	for i := range n {
		at = append(at, int64(i)*1_000_000/int64(rate))
		lat = append(lat, base)
	}
	return at, lat
}

func TestStallsSmoothTail(t *testing.T) {
	at, lat := evenSends(100_000, 10_000, 100) // 10 s
	for i := range lat {
		if i%100 == 0 { // 1% late, spread evenly over time
			lat[i] = 5_000
		}
	}
	s := findStalls(at, lat, 100, 10_000)
	if s.TailInWorst > 0.05 {
		t.Errorf("an even tail: %.2f of it in the worst 1%% of windows, want at most 0.05", s.TailInWorst)
	}
	if s.SendGapsMs != 0 || s.TailNearGaps != 0 {
		t.Errorf("no gaps in the sends, got %+v", s)
	}
}

func TestStallsBurst(t *testing.T) {
	at, lat := evenSends(100_000, 10_000, 100)
	// The generator stops for 3 ms at 4 s; what was sent just before and
	// everything after, for 10 ms, is late.
	var keptAt, keptLat []int64
	for i, t0 := range at {
		switch {
		case t0 >= 4_000_000 && t0 < 4_003_000:
			continue // nothing sent
		case t0 >= 3_998_000 && t0 < 4_013_000:
			lat[i] = 3_000
		}
		keptAt, keptLat = append(keptAt, t0), append(keptLat, lat[i])
	}
	s := findStalls(keptAt, keptLat, 100, 10_000)
	if s.TailInWorst < 0.9 {
		t.Errorf("a burst: %.2f of the tail in the worst 1%% of windows, want at least 0.9", s.TailInWorst)
	}
	if s.P99Outside != 100 {
		t.Errorf("p99 outside the burst %d us, want 100", s.P99Outside)
	}
	if s.SendGapsMs != 3 {
		t.Errorf("send gaps %d ms, want 3", s.SendGapsMs)
	}
	if s.TailNearGaps != 1 {
		t.Errorf("tail near the gap %.2f, want all of it", s.TailNearGaps)
	}
	if low := findStalls(keptAt, keptLat, 100, 1000); low.SendGapsMs != 0 {
		t.Errorf("at 1,000 msgs/s gaps are not counted, got %d", low.SendGapsMs)
	}
}

// TestTailReadsDump: bench tail reads mqttload's dump (index, send time
// and latency in ns), leaves out the warm-up, and refuses a line that is
// not three numbers.
func TestTailReadsDump(t *testing.T) {
	var b strings.Builder
	for i := range 3000 {
		lat := int64(100_000) // 100 us
		if i < 1000 {
			lat = 50_000_000 // the warm-up: 50 ms, left out
		} else if i%100 == 0 {
			lat = 2_000_000
		}
		fmt.Fprintf(&b, "%d %d %d\n", i%7, int64(i)*1_000_000, lat) // one a ms
	}
	res, err := Tail(strings.NewReader(b.String()), 1000, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if res.Messages != 2000 || res.P50us != 100 || res.P999us != 2000 {
		t.Errorf("read %+v, want 2000 messages, p50 100 us, p99.9 2000 us", res)
	}
	// A send time a century on: no gap map of that span is made.
	far, err := Tail(strings.NewReader("0 0 1000\n1 3155760000000000000 1000\n2 1000000 5000\n"), 20000, 0)
	if err != nil || far.Stalls.SendGapsMs != 0 {
		t.Errorf("a dump spanning a century: %+v, %v", far, err)
	}
	if _, err := Tail(strings.NewReader("1 2\n"), 0, 0); err == nil {
		t.Error("a line of two fields was read")
	}
	if _, err := Tail(strings.NewReader("1 2 x\n"), 0, 0); err == nil {
		t.Error("a latency that is not a number was read")
	}
}
