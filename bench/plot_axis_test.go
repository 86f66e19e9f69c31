package bench

import (
	"fmt"
	"math"
	"os"
	"regexp"
	"strings"
	"testing"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

func TestPercentileXMonotoneDecades(t *testing.T) {
	prev := math.Inf(-1)
	for p := 0.0; p < 99.9999; p += 0.01 {
		x := percentileX(p)
		if x <= prev {
			t.Fatalf("percentileX(%v)=%v not above %v", p, x, prev)
		}
		prev = x
	}
	if d := percentileX(99) - percentileX(90); math.Abs(d-1) > 1e-9 {
		t.Fatalf("99%% is %v decades after 90%%, want 1", d)
	}
	if d := percentileX(99.99) - percentileX(99.9); math.Abs(d-1) > 1e-6 {
		t.Fatalf("99.99%% is %v decades after 99.9%%, want 1", d)
	}
}

func TestNiceTicksRoundAndCovering(t *testing.T) {
	for _, r := range [][2]float64{{0, 1}, {0, 7.3}, {0, 0.042}, {0, 12345}, {500, 10000}, {0, 3e6}} {
		ticks := niceTicks(r[0], r[1], 4)
		if len(ticks) < 3 || len(ticks) > 9 {
			t.Fatalf("%v: %d ticks %v", r, len(ticks), ticks)
		}
		if ticks[0] > r[0] || ticks[len(ticks)-1] < r[1] {
			t.Fatalf("%v: ticks %v do not cover", r, ticks)
		}
		step := ticks[1] - ticks[0]
		m := step / math.Pow(10, math.Floor(math.Log10(step)+1e-9))
		if math.Abs(m-1) > 1e-6 && math.Abs(m-2) > 1e-6 && math.Abs(m-5) > 1e-6 {
			t.Fatalf("%v: step %v is not 1-2-5", r, step)
		}
	}
}

// Label extents from the font size: the x tick labels the charts draw
// must not overlap.
func TestChartLabelsDoNotOverlap(t *testing.T) {
	var pts []Point
	for x := 1.0; x <= 1e6; x *= 1.3 {
		pts = append(pts, Point{X: x, Y: x / 3})
	}
	for _, svg := range []string{
		chart("log", "x", "y", true, Series{Name: "s", Points: pts}),
		chart("lin", "x", "y", false, Series{Name: "s", Points: pts}),
		percentileChart("p", percentileSeries("s", synthetic())),
	} {
		re := regexp.MustCompile(`<text x="([0-9.]+)" y="([0-9.]+)" text-anchor="middle">([^<]+)</text>`)
		type box struct{ l, r, y float64 }
		var boxes []box
		for _, m := range re.FindAllStringSubmatch(svg, -1) {
			var x, y float64
			x, y = atof(m[1]), atof(m[2])
			hw := textWidth(m[3], 11) / 2
			boxes = append(boxes, box{x - hw, x + hw, y})
		}
		for i := range boxes {
			for j := i + 1; j < len(boxes); j++ {
				a, b := boxes[i], boxes[j]
				if a.y == b.y && a.l < b.r && b.l < a.r {
					t.Fatalf("labels overlap: %+v %+v", a, b)
				}
			}
		}
	}
}

func synthetic() *hdrhistogram.Histogram {
	h := hdrhistogram.New(1, 10_000_000, 3)
	for i := int64(1); i <= 100000; i++ {
		h.RecordValue(200 + (i*7919)%800 + 100000000/(100001-i)/10)
	}
	return h
}

// With CHATD_PLOT_OUT set, writes a sample percentile plot as SVG to look at.
func TestPercentilePlotSample(t *testing.T) {
	s := percentileSeries("synthetic", synthetic())
	if s.Points[len(s.Points)-1].Y < s.Points[0].Y {
		t.Fatal("latency falls with percentile")
	}
	if out := os.Getenv("CHATD_PLOT_OUT"); out != "" {
		svg := percentileChart("sample", s)
		svg = regexp.MustCompile(`(?s)^.*?(<svg)`).ReplaceAllString(svg, "$1")
		svg = regexp.MustCompile(`</figure>\s*$`).ReplaceAllString(svg, "")
		if err := os.WriteFile(out, []byte(svg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func atof(s string) float64 {
	var f float64
	fmt.Sscan(s, &f)
	return f
}

// TestTickLabelsOneUnitPerAxis: from 1,000 up labels are in thousands, so
// an axis reads 5k, 10k, 15k and never 5000 beside 10k.
func TestTickLabelsOneUnitPerAxis(t *testing.T) {
	for v, want := range map[float64]string{500: "500", 1000: "1k", 5000: "5k", 10000: "10k", 2500: "2.5k", 2e6: "2M", 0.25: "0.25"} {
		if got := tickLabel(v); got != want {
			t.Errorf("tickLabel(%g) = %q, want %q", v, got, want)
		}
	}
}

// TestLegendAvoidsTheLines: a rising line fills the top right, so the
// legend goes top left; a falling one, the other way round.
func TestLegendAvoidsTheLines(t *testing.T) {
	line := func(y0, y1 float64) Series {
		s := Series{Name: "p99 latency"}
		for i := range 11 {
			s.Points = append(s.Points, Point{X: float64(i * 1000), Y: y0 + (y1-y0)*float64(i)/10})
		}
		return s
	}
	legendAt := func(svg string) float64 {
		i := strings.Index(svg, `<rect x="`)
		var x float64
		fmt.Sscanf(svg[i+len(`<rect x="`):], "%g", &x)
		return x
	}
	rising := legendAt(chart("rising", "msgs/s", "ms", false, line(0, 100)))
	falling := legendAt(chart("falling", "msgs/s", "ms", false, line(100, 0)))
	if rising >= 320 || falling <= 320 {
		t.Errorf("legend at x=%g for a rising line and x=%g for a falling one: want left, then right", rising, falling)
	}
}
