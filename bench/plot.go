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
	fmt.Fprintf(&b, `<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="#333"/><line x1="%g" y1="%g" x2="%g" y2="%g" stroke="#333"/>`,
		pad, h-pad, w-pad, h-pad, pad, pad, pad, h-pad)
	for i := 0; i <= 4; i++ {
		y := maxY * float64(i) / 4
		fmt.Fprintf(&b, `<text x="%g" y="%g" text-anchor="end">%s</text>`, pad-4, sy(y)+4, short(y))
		var x float64
		if logX {
			x = math.Pow(10, minX+(maxX-minX)*float64(i)/4)
		} else {
			x = minX + (maxX-minX)*float64(i)/4
		}
		fmt.Fprintf(&b, `<text x="%g" y="%g" text-anchor="middle">%s</text>`, sx(x), h-pad+16, short(x))
	}
	fmt.Fprintf(&b, `<text x="%g" y="%g" text-anchor="middle">%s</text>`, w/2, h-12, html.EscapeString(xlabel))
	fmt.Fprintf(&b, `<text x="14" y="%g" transform="rotate(-90 14 %g)" text-anchor="middle">%s</text>`, h/2, h/2, html.EscapeString(ylabel))
	colors := []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd"}
	for i, s := range series {
		var pts []string
		for _, p := range s.Points {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", sx(p.X), sy(p.Y)))
		}
		c := colors[i%len(colors)]
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`, c, strings.Join(pts, " "))
		fmt.Fprintf(&b, `<text x="%g" y="%g" fill="%s">%s</text>`, w-pad-150, pad+14*float64(i+1), c, html.EscapeString(s.Name))
	}
	b.WriteString("</svg></figure>\n")
	return b.String()
}

func short(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.1fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
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
