package bench

import (
	"fmt"
	"html"
	"math"
	"strings"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// percentileSeries samples a histogram of microseconds as (percentile,
// milliseconds) points, denser toward the tail as HdrHistogram does.
func percentileSeries(name string, h *hdrhistogram.Histogram) Series {
	s := Series{Name: name}
	if h.TotalCount() == 0 {
		return s
	}
	for x := 0.0; x <= 5.0001; x += 0.05 {
		p := 100 * (1 - math.Pow(10, -x))
		s.Points = append(s.Points, Point{X: p, Y: float64(h.ValueAtQuantile(p)) / 1000})
	}
	return s
}

// percentileChart draws latency against percentile on HdrHistogram's
// axis (see percentileX), 0% to 99.999%, with the legend top left where
// the curves, flat before their tail, leave room.
func percentileChart(title string, series ...Series) string {
	const w, h, left, right, top, bottom = 640.0, 340.0, 64.0, 40.0, 16.0, 48.0
	const maxXv = 5.0 // 99.999%
	maxY := 0.0
	for _, s := range series {
		for _, p := range s.Points {
			maxY = math.Max(maxY, p.Y)
		}
	}
	yt := niceTicks(0, math.Max(maxY, 0.001), 5)
	top1 := yt[len(yt)-1]
	sx := func(p float64) float64 { return left + math.Min(percentileX(p), maxXv)/maxXv*(w-left-right) }
	sy := func(y float64) float64 { return h - bottom - y/top1*(h-top-bottom) }
	var b strings.Builder
	fmt.Fprintf(&b, `<figure><figcaption>%s</figcaption><svg width="%g" height="%g" viewBox="0 0 %g %g" xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" font-size="11">`,
		html.EscapeString(title), w, h, w, h)
	fmt.Fprintf(&b, `<rect width="%g" height="%g" fill="white"/>`, w, h)
	for _, y := range yt {
		fmt.Fprintf(&b, `<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="#ddd"/>`, left, sy(y), w-right, sy(y))
		fmt.Fprintf(&b, `<text x="%g" y="%g" text-anchor="end">%s</text>`, left-4, sy(y)+4, tickLabel(y))
	}
	for i, l := range []string{"0%", "90%", "99%", "99.9%", "99.99%", "99.999%"} {
		p := 100 * (1 - math.Pow(10, -float64(i)))
		fmt.Fprintf(&b, `<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="#ddd"/>`, sx(p), top, sx(p), h-bottom)
		fmt.Fprintf(&b, `<text x="%g" y="%g" text-anchor="middle">%s</text>`, sx(p), h-bottom+16, l)
	}
	fmt.Fprintf(&b, `<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="#333"/><line x1="%g" y1="%g" x2="%g" y2="%g" stroke="#333"/>`,
		left, h-bottom, w-right, h-bottom, left, top, left, h-bottom)
	fmt.Fprintf(&b, `<text x="%g" y="%g" text-anchor="middle">percentile</text>`, (left+w-right)/2, h-10)
	fmt.Fprintf(&b, `<text x="14" y="%g" transform="rotate(-90 14 %g)" text-anchor="middle">latency (ms)</text>`, (top+h-bottom)/2, (top+h-bottom)/2)
	colors := []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd"}
	for i, s := range series {
		var pts []string
		for _, p := range s.Points {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", sx(p.X), sy(p.Y)))
		}
		c := colors[i%len(colors)]
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`, c, strings.Join(pts, " "))
		ly := top + 8 + 16*float64(i)
		fmt.Fprintf(&b, `<rect x="%g" y="%g" width="14" height="3" fill="%s"/><text x="%g" y="%g">%s</text>`, left+10, ly+4, c, left+30, ly+9, html.EscapeString(s.Name))
	}
	b.WriteString("</svg></figure>\n")
	return b.String()
}
