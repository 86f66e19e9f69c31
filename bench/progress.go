package bench

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// bar is a one-line progress bar on stderr.
type bar struct {
	name  string
	total int
	start time.Time
}

func newBar(name string, total int) *bar { return &bar{name: name, total: total, start: time.Now()} }

func (b *bar) set(n int) {
	const width = 30
	frac := float64(n) / float64(max(b.total, 1))
	fill := int(frac * width)
	el := time.Since(b.start).Seconds()
	fmt.Fprintf(os.Stderr, "\r%-8s [%s%s] %d/%d %5.1fs %8.0f/s", b.name,
		strings.Repeat("=", fill), strings.Repeat(" ", width-fill), n, b.total, el, float64(n)/max(el, 1e-9))
}

func (b *bar) done() { fmt.Fprintln(os.Stderr) }
