package bench

import (
	"fmt"
	"html"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// Point is one (x, y) sample of a plot.
type Point struct{ X, Y float64 }

// Series is a named line.
type Series struct {
	Name   string
	Points []Point
}

// chart renders one line chart as inline SVG.
func chart(title, xlabel, ylabel string, logX bool, series ...Series) string {
	const w, h, pad = 640.0, 320.0, 56.0
	minX, maxX, maxY := math.Inf(1), math.Inf(-1), 0.0
	for _, s := range series {
		for _, p := range s.Points {
			x := p.X
			if logX {
				x = math.Log10(math.Max(p.X, 1))
			}
			minX, maxX, maxY = math.Min(minX, x), math.Max(maxX, x), math.Max(maxY, p.Y)
		}
	}
	if maxX <= minX {
		maxX = minX + 1
	}
	if maxY == 0 {
		maxY = 1
	}
	yt := niceTicks(0, maxY, 4)
	maxY = yt[len(yt)-1]
	sx := func(x float64) float64 {
		if logX {
			x = math.Log10(math.Max(x, 1))
		}
		return pad + (x-minX)/(maxX-minX)*(w-2*pad)
	}
	sy := func(y float64) float64 { return h - pad - y/maxY*(h-2*pad) }
	var b strings.Builder
	fmt.Fprintf(&b, `<figure><figcaption>%s</figcaption><svg width="%g" height="%g" viewBox="0 0 %g %g" xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" font-size="11">`,
		html.EscapeString(title), w, h, w, h)
	fmt.Fprintf(&b, `<rect width="%g" height="%g" fill="white"/>`, w, h)
	fmt.Fprintf(&b, `<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="#333"/><line x1="%g" y1="%g" x2="%g" y2="%g" stroke="#333"/>`,
		pad, h-pad, w-pad, h-pad, pad, pad, pad, h-pad)
	for _, y := range niceTicks(0, maxY, 4) {
		if y > maxY*1.001 {
			continue
		}
		fmt.Fprintf(&b, `<text x="%g" y="%g" text-anchor="end">%s</text>`, pad-4, sy(y)+4, tickLabel(y))
	}
	lastEnd := math.Inf(-1)
	for _, x := range xTicks(minX, maxX, logX) {
		l := tickLabel(x)
		cx, half := sx(x), textWidth(l, 11)/2
		if cx-half < lastEnd+6 {
			continue // would overlap the previous label
		}
		lastEnd = cx + half
		fmt.Fprintf(&b, `<text x="%g" y="%g" text-anchor="middle">%s</text>`, cx, h-pad+16, l)
	}
	fmt.Fprintf(&b, `<text x="%g" y="%g" text-anchor="middle">%s</text>`, w/2, h-12, html.EscapeString(xlabel))
	fmt.Fprintf(&b, `<text x="14" y="%g" transform="rotate(-90 14 %g)" text-anchor="middle">%s</text>`, h/2, h/2, html.EscapeString(ylabel))
	colors := []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd"}
	var drawn [][2]float64 // every point in pixels, to place the legend clear of them
	for i, s := range series {
		var pts []string
		for j, p := range s.Points {
			px, py := sx(p.X), sy(p.Y)
			if j > 0 { // the segment from the previous point, every few pixels
				prev := drawn[len(drawn)-1]
				for k := 1.0; k < 16; k++ {
					drawn = append(drawn, [2]float64{prev[0] + (px-prev[0])*k/16, prev[1] + (py-prev[1])*k/16})
				}
			}
			drawn = append(drawn, [2]float64{px, py})
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px, py))
		}
		c := colors[i%len(colors)]
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`, c, strings.Join(pts, " "))
	}
	lx := legendX(series, drawn, pad+8, w-pad-8, pad)
	for i, s := range series {
		c := colors[i%len(colors)]
		ly := pad + 14*float64(i)
		fmt.Fprintf(&b, `<rect x="%g" y="%g" width="14" height="3" fill="%s"/><text x="%g" y="%g">%s</text>`,
			lx, ly+4, c, lx+20, ly+9, html.EscapeString(s.Name))
	}
	b.WriteString("</svg></figure>\n")
	return b.String()
}

// legendX places a chart's legend, one line per series from the top at
// y top, in whichever upper corner between left and right the lines
// cross least: throughput falls and latency rises with load, so no one
// corner is always free.
func legendX(series []Series, drawn [][2]float64, left, right, top float64) float64 {
	width := 0.0
	for _, s := range series {
		width = math.Max(width, 20+textWidth(s.Name, 11))
	}
	height := 14 * float64(len(series))
	in := func(x0 float64) int {
		n := 0
		for _, p := range drawn {
			if p[0] >= x0-4 && p[0] <= x0+width+4 && p[1] >= top-4 && p[1] <= top+height+4 {
				n++
			}
		}
		return n
	}
	if r := right - width; in(r) <= in(left) {
		return r
	}
	return left
}

// writePlot writes an HTML page of charts into the report folder and
// returns its path.
func writePlot(dir, name, title string, charts ...string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, name)
	page := "<!doctype html><meta charset=utf-8><title>" + html.EscapeString(title) + "</title><h1>" +
		html.EscapeString(title) + "</h1>\n" + strings.Join(charts, "\n")
	return path, os.WriteFile(path, []byte(page), 0o644)
}

// xTicks gives round x ticks in data units: decades on a log axis.
func xTicks(minX, maxX float64, logX bool) []float64 {
	if !logX {
		var t []float64 // only ticks on the axis: a tick left of it would float off the plot
		for _, v := range niceTicks(minX, maxX, 5) {
			if v >= minX-1e-9*(maxX-minX) && v <= maxX+1e-9*(maxX-minX) {
				t = append(t, v)
			}
		}
		return t
	}
	var t []float64
	for e := math.Floor(minX); e <= math.Ceil(maxX); e++ {
		if e >= minX-1e-9 && e <= maxX+1e-9 {
			t = append(t, math.Pow(10, e))
		}
	}
	return t
}
