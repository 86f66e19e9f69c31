package bench

import (
	"fmt"
	"math"
)

// percentileX maps a percentile (0..100) to the HdrHistogram x position
// log10(1/(1-p)): 0% at 0, 90% at 1, 99% at 2, so each added nine is one
// evenly spaced decade and the tail is not squeezed into the last pixel.
func percentileX(pct float64) float64 {
	q := 1 - pct/100
	if q < 1e-9 {
		q = 1e-9
	}
	return -math.Log10(q)
}

// niceTicks picks round tick values (1, 2 or 5 times a power of ten)
// covering [lo, hi] with about n intervals.
func niceTicks(lo, hi float64, n int) []float64 {
	if hi <= lo {
		hi = lo + 1
	}
	raw := (hi - lo) / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := 10 * mag
	for _, m := range []float64{1, 2, 5} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var ticks []float64
	first := math.Floor(lo/step+1e-9) * step
	for i := 0.0; ; i++ {
		v := first + i*step
		ticks = append(ticks, v)
		if v >= hi-step*1e-9 {
			break
		}
	}
	return ticks
}

// tickLabel formats a round tick value without trailing noise, in
// thousands from 1,000 so that one axis never mixes "5000" and "10k".
func tickLabel(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e6:
		return trim(v/1e6) + "M"
	case a >= 1e3:
		return trim(v/1e3) + "k"
	}
	return trim(v)
}

func trim(v float64) string { return fmt.Sprintf("%g", math.Round(v*1000)/1000) }

// textWidth estimates a label's width in pixels at font size px (average
// sans-serif glyph ~0.6 em), for keeping labels apart.
func textWidth(s string, px float64) float64 { return 0.6 * px * float64(len(s)) }
