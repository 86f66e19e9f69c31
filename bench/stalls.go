package bench

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"time"
)

// Stalls says how a route run's tail is spread over time. On a shared
// two-core machine most of chatd's p99 and p99.9 came in bursts: a few
// 10 ms windows in which most messages were late, and in which the load
// generator's paced senders sent nothing for a millisecond or more (the
// generator itself was not running: another process held a core). A tail
// made of such bursts is the machine's, not the server's; a smooth one is
// the server's. Mosquitto's runs through mqttload have the same bursts.
type Stalls struct {
	// TailInWorst is the share of the messages over p99 that were sent in
	// the worst 1% of 10 ms windows (by how many late messages each held).
	// A tail spread evenly over time gives about 0.01-0.05; bursts give
	// much more.
	TailInWorst float64 `json:"tail_share_in_worst_1pct_windows"`
	// P99Outside is the p99 latency (us) of the messages sent outside
	// those worst windows: the run without its 1% worst bursts, for
	// comparing servers whose bursts the machine made.
	P99Outside int64 `json:"latency_p99_outside_worst_us"`
	// SendGapsMs counts the milliseconds, between the first send measured
	// and the last, in which no sender sent anything, at a rate that
	// schedules several sends in every millisecond (not counted below
	// MinGapRate).
	SendGapsMs int `json:"send_gaps_ms"`
	// TailNearGaps is the share of the messages over p99 sent from 5 ms
	// before a send gap to 10 ms after it.
	TailNearGaps float64 `json:"tail_share_near_send_gaps"`

	gaps bool // the two above were counted
}

// MinGapRate is the offered rate (msgs/s) from which findStalls counts
// send gaps: below it a millisecond without a send means nothing.
const MinGapRate = 2000

// maxGapSpan bounds the run (us) whose send gaps findStalls counts, with
// a bool per millisecond: a dump from another tool may hold any times.
const maxGapSpan = int64(time.Hour / time.Microsecond)

// findStalls computes Stalls from each measured message's send time and
// latency (microseconds; at[i] goes with lat[i]) at the offered rate
// (msgs/s, 0 for flat out); p99 is the run's p99 latency.
func findStalls(at, lat []int64, p99 int64, rate int) Stalls {
	var s Stalls
	if len(at) == 0 || len(at) != len(lat) {
		return s
	}
	first, last := slices.Min(at), slices.Max(at)
	const window = 10_000 // us
	late := make(map[int64]int)
	slow := 0
	for i, t := range at {
		if lat[i] > p99 {
			late[(t-first)/window]++
			slow++
		}
	}
	if slow == 0 {
		return s
	}
	type count struct {
		w int64
		n int
	}
	counts := make([]count, 0, len(late))
	for w, n := range late {
		counts = append(counts, count{w, n})
	}
	slices.SortFunc(counts, func(a, b count) int { return cmp.Or(b.n-a.n, cmp.Compare(a.w, b.w)) })
	windows := int((last-first)/window) + 1
	worst := make(map[int64]bool)
	inWorst := 0
	for _, c := range counts[:min(max(1, windows/100), len(counts))] {
		worst[c.w] = true
		inWorst += c.n
	}
	s.TailInWorst = float64(inWorst) / float64(slow)
	var outside []int64
	for i, t := range at {
		if !worst[(t-first)/window] {
			outside = append(outside, lat[i])
		}
	}
	_, s.P99Outside, _, _ = percentiles(outside)

	if rate < MinGapRate || last-first > maxGapSpan {
		return s // too slow to tell, or too long a span to map by millisecond
	}
	s.gaps = true
	ms := int((last-first)/1000) + 1
	sent := make([]bool, ms)
	for _, t := range at {
		sent[(t-first)/1000] = true
	}
	near := make([]bool, ms) // within 5 ms before or 10 ms after a gap
	for i, ok := range sent {
		if ok {
			continue
		}
		s.SendGapsMs++
		for j := max(0, i-5); j <= min(ms-1, i+10); j++ {
			near[j] = true
		}
	}
	nearGaps := 0
	for i, t := range at {
		if lat[i] > p99 && near[(t-first)/1000] {
			nearGaps++
		}
	}
	s.TailNearGaps = float64(nearGaps) / float64(slow)
	return s
}

func (s Stalls) print(w io.Writer) {
	fmt.Fprintf(w, "tail in time     %.0f%% of the messages over p99 were sent in the worst 1%% of 10 ms windows (p99 outside them %.2f ms)",
		100*s.TailInWorst, float64(s.P99Outside)/1000)
	if s.gaps {
		fmt.Fprintf(w, "; senders sent nothing in %d ms, and %.0f%% of them were sent near those gaps", s.SendGapsMs, 100*s.TailNearGaps)
	}
	fmt.Fprintln(w)
}
