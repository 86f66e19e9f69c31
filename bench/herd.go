package bench

import (
	"context"
	"fmt"
	"os"
	"time"
)

// HerdResult is what the herd scenario measures.
type HerdResult struct {
	Conns       int            `json:"conns"`
	Jitter      bool           `json:"jitter"`
	DownSeconds float64        `json:"server_down_seconds"`
	BackSeconds float64        `json:"all_back_seconds"` // from the kill until every connection is back
	Back        int            `json:"back"`
	PeakPerSec  float64        `json:"peak_reconnects_per_second"` // over 100 ms windows
	Failed      map[string]int `json:"failed_attempts"`
	Timeline    []Point        `json:"connected_by_time"`
	Plot        string         `json:"plot"`
}

// Herd holds cfg.Conns connections, kills the server with SIGKILL (every
// connection drops at once), starts it again on the same data, and
// measures how the clients come back with their backoff.
func Herd(ctx context.Context, cfg Config, jitter bool) (*HerdResult, error) {
	cfg.setDefaults()
	if cfg.Addr != "" {
		return nil, fmt.Errorf("bench: herd restarts the server, so it must start its own (no -addr)")
	}
	t, err := startTarget(ctx, &cfg)
	if err != nil {
		return nil, err
	}
	defer t.stop()
	res := &HerdResult{Conns: cfg.Conns, Jitter: jitter}
	ws, err := startWorkers(&cfg, t.addr, cfg.Conns, 0, fmt.Sprintf("h%d-", time.Now().UnixNano()%1e6),
		"--reconnect", fmt.Sprintf("--jitter=%v", jitter))
	if err != nil {
		return nil, err
	}
	defer ws.stop()
	ws.waitPhase()
	ws.begin()
	ws.waitPhase()
	_, up, _ := ws.totals()
	fmt.Fprintf(os.Stderr, "herd: %d connections up; killing the server (jitter %v)\n", up, jitter)

	_, _, failedBefore := ws.totals()
	kill := time.Now()
	t.crash()
	// Wait until the workers noticed, then start the server again.
	for time.Since(kill) < 5*time.Second {
		if _, u, _ := ws.totals(); u < up/10 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := t.start(ctx); err != nil {
		return nil, err
	}
	res.DownSeconds = time.Since(kill).Seconds()
	bar := newBar("herd", up)
	// Workers report every 200 ms, so the peak rate is taken over a
	// sliding one-second window of samples, not between two reports.
	type sample struct {
		at time.Time
		n  int
	}
	samples := []sample{{time.Now(), ws.reconnects()}}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		time.Sleep(100 * time.Millisecond)
		_, u, _ := ws.totals()
		bar.set(u)
		el := time.Since(kill).Seconds()
		res.Timeline = append(res.Timeline, Point{X: el, Y: float64(u)})
		now := sample{time.Now(), ws.reconnects()}
		samples = append(samples, now)
		for _, old := range samples {
			if span := now.at.Sub(old.at); span >= time.Second {
				if rate := float64(now.n-old.n) / span.Seconds(); rate > res.PeakPerSec {
					res.PeakPerSec = rate
				}
			}
		}
		if len(samples) > 20 {
			samples = samples[len(samples)-20:]
		}
		if u >= up || time.Now().After(deadline) {
			res.Back = u
			res.BackSeconds = el
			break
		}
	}
	bar.done()
	_, _, failed := ws.totals()
	res.Failed = map[string]int{}
	for k, v := range failed {
		res.Failed[k] = v - failedBefore[k] // the storm's own, not the initial ramp's
	}
	res.Plot, _ = writePlot(cfg.Report, fmt.Sprintf("herd-%d-jitter-%v.html", cfg.Conns, jitter), "chatd bench herd",
		chart(fmt.Sprintf("connections back after a kill -9 and restart (jitter %v)", jitter), "seconds since the kill",
			"connected", false, Series{Name: "connected", Points: res.Timeline}))
	return res, nil
}

// Print writes the result as a table, or JSON with cfg.JSON.
func (r *HerdResult) Print(cfg Config) {
	if printJSON(&cfg, r) {
		return
	}
	w := cfg.Out
	fmt.Fprintf(w, "herd             %d connections, backoff jitter %v\n", r.Conns, r.Jitter)
	fmt.Fprintf(w, "server down      %.2fs (kill -9 to listening again)\n", r.DownSeconds)
	fmt.Fprintf(w, "all back         %d of %d after %.2fs; peak %.0f reconnects/s\n", r.Back, r.Conns, r.BackSeconds, r.PeakPerSec)
	fmt.Fprintf(w, "failed attempts  %v\n", r.Failed)
	if r.Plot != "" {
		fmt.Fprintf(w, "plot             %s\n", r.Plot)
	}
	fmt.Fprintf(w, "BenchmarkHerd/conns=%d/jitter=%v 1 %.2f all-back-s %.0f peak-reconnects/s\n", r.Conns, r.Jitter, r.BackSeconds, r.PeakPerSec)
}
