package bench

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// TailResult is the latency of a dump of per-message samples read by
// Tail, with how its tail is spread over time.
type TailResult struct {
	Messages int    `json:"messages"`
	P50us    int64  `json:"latency_p50_us"`
	P99us    int64  `json:"latency_p99_us"`
	P999us   int64  `json:"latency_p999_us"`
	Stalls   Stalls `json:"tail_in_time"`
}

// Tail reads per-message samples, a line each of "index sent latency"
// (send time and latency in nanoseconds, as mqttload pairs -dump writes
// them), leaves out what was sent in the first skip, and computes the
// percentiles and Stalls at the offered rate (msgs/s, 0 if none), the
// same way bench route does for its own run: so that another broker's
// tail, measured by another tool, can be read beside chatd's.
func Tail(r io.Reader, rate int, skip time.Duration) (*TailResult, error) {
	var at, lat []int64
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 {
			return nil, fmt.Errorf("bench tail: line %d: want index, send time and latency, got %q", n, sc.Text())
		}
		sent, err1 := strconv.ParseInt(f[1], 10, 64)
		l, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil || l < 0 {
			return nil, fmt.Errorf("bench tail: line %d: %q is not two nanosecond counts", n, sc.Text())
		}
		at, lat = append(at, sent/1000), append(lat, max(1, l/1000))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("bench tail: %w", err)
	}
	if len(at) == 0 {
		return nil, fmt.Errorf("bench tail: no samples")
	}
	from := slices.Min(at) + skip.Microseconds()
	keep := 0
	for i := range at {
		if at[i] >= from {
			at[keep], lat[keep] = at[i], lat[i]
			keep++
		}
	}
	at, lat = at[:keep], lat[:keep]
	if keep == 0 {
		return nil, fmt.Errorf("bench tail: every sample is within the first %v", skip)
	}
	res := &TailResult{Messages: keep}
	res.P50us, res.P99us, res.P999us, _ = percentiles(slices.Clone(lat))
	res.Stalls = findStalls(at, lat, res.P99us, rate)
	return res, nil
}

func (r *TailResult) Print(cfg Config) {
	if printJSON(&cfg, r) {
		return
	}
	fmt.Fprintf(cfg.Out, "latency          p50 %.2f ms  p99 %.2f ms  p99.9 %.2f ms (%d messages)\n",
		float64(r.P50us)/1000, float64(r.P99us)/1000, float64(r.P999us)/1000, r.Messages)
	r.Stalls.print(cfg.Out)
}
