package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// ConnectResult is what the connect scenario measures.
type ConnectResult struct {
	Conns         int            `json:"conns"`
	Up            int            `json:"up"`
	Failed        map[string]int `json:"failed"`
	Seconds       float64        `json:"ramp_seconds"`
	ConnectsPerS  float64        `json:"connects_per_second"`
	Transport     string         `json:"transport"`
	ServerCPU     float64        `json:"server_cpu_seconds"` // during the timed storm
	CPUPerLogin   float64        `json:"server_cpu_us_per_login"`
	CPUSource     string         `json:"server_cpu_source"`
	CPUProfile    string         `json:"cpu_profile,omitempty"`
	Before        Stats          `json:"server_before"`
	After         Stats          `json:"server_after"`
	RSSPerConn    float64        `json:"rss_bytes_per_conn"`
	HeapPerConn   float64        `json:"heap_bytes_per_conn"`
	KernelBefore  Kernel         `json:"kernel_before"`
	KernelAfter   Kernel         `json:"kernel_after"`
	KernelPerSock float64        `json:"kernel_bytes_per_socket"`
	Profile       string         `json:"heap_profile"`
	Plot          string         `json:"plot"`
	Samples       []Point        `json:"rss_mib_by_connections"`
	Projection    Projection     `json:"projection_1m"`
}

// transportName says how the clients connect, for the results.
func transportName(cfg *Config) string {
	name := "plaintext"
	if cfg.Noise {
		name = "noise-xx"
	}
	if cfg.WS {
		name += " over websocket"
	}
	return name
}

// Projection scales the per-connection figures to a million connections.
type Projection struct {
	UserBytes   float64 `json:"user_space_bytes"`
	KernelBytes float64 `json:"kernel_bytes"`
	Profile     string  `json:"sysctl_profile"`
}

// Connect ramps cfg.Conns authenticated connections, holds them for
// cfg.Hold, and measures the server's cost per idle connection.
func Connect(ctx context.Context, cfg Config) (*ConnectResult, error) {
	cfg.setDefaults()
	if cfg.Conns <= 0 {
		return nil, fmt.Errorf("bench: connect needs -conns > 0")
	}
	t, err := startTarget(ctx, &cfg)
	if err != nil {
		return nil, err
	}
	defer t.stop()
	res := &ConnectResult{Conns: cfg.Conns, Transport: transportName(&cfg)}
	cpu, source := t.cpuClock(ctx)
	res.CPUSource = source
	fmt.Fprintf(os.Stderr, "connect: %d connections to %s (%d per worker, rate %s)\n",
		cfg.Conns, t.addr, cfg.PerWorker, rateText(cfg.Rate))

	// Setup, untimed: register the users.
	ws, err := startWorkers(&cfg, t.addr, cfg.Conns, cfg.Rate, fmt.Sprintf("c%d-", time.Now().UnixNano()%1e6))
	if err != nil {
		return nil, err
	}
	defer ws.stop()
	watch := func(name string, get func() int) (stop func()) {
		bar := newBar(name, cfg.Conns)
		quit := make(chan struct{})
		finished := make(chan struct{})
		go func() {
			defer close(finished)
			for {
				select {
				case <-quit:
					bar.set(get())
					bar.done()
					return
				case <-time.After(200 * time.Millisecond):
					bar.set(get())
				}
			}
		}()
		return func() { close(quit); <-finished }
	}
	stop := watch("register", func() int { r, _, _ := ws.totals(); return r })
	ws.waitPhase()
	stop()

	// Baseline after setup, with the heap settled and returned to the OS.
	time.Sleep(time.Second)
	if res.Before, err = t.stats(ctx, true); err != nil {
		return nil, err
	}
	res.KernelBefore = readKernel()

	// Timed: every user connects and logs in with its token, while the
	// server's memory is sampled against the number connected. The
	// server's CPU time is read around exactly this window, so that
	// registration (argon2) and the settling below stay out of it.
	var profiled chan struct{}
	if cfg.CPUProfile > 0 && cfg.Report != "" && os.MkdirAll(cfg.Report, 0o755) == nil {
		res.CPUProfile = filepath.Join(cfg.Report, fmt.Sprintf("cpu-connect-%s-%d.pprof", res.Transport, cfg.Conns))
		profiled = make(chan struct{})
		go func() {
			defer close(profiled)
			if err := t.saveCPUProfile(ctx, res.CPUProfile, cfg.CPUProfile); err != nil {
				fmt.Fprintf(os.Stderr, "connect: cpu profile: %v\n", err)
				res.CPUProfile = ""
			}
		}()
		time.Sleep(50 * time.Millisecond) // let the profiler start first
	}
	cpu0 := cpu()
	start := time.Now()
	ws.begin()
	stop = watch("connect", func() int { _, u, _ := ws.totals(); return u })
	sampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			_, up, _ := ws.totals()
			if rss, err := t.rssNow(ctx); err == nil {
				res.Samples = append(res.Samples, Point{X: float64(up), Y: float64(rss) / (1 << 20)})
			}
			select {
			case <-sampling:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	ws.waitPhase()
	res.Seconds = time.Since(start).Seconds()
	res.ServerCPU = cpu() - cpu0
	close(sampling)
	<-sampled
	stop()
	_, res.Up, res.Failed = ws.totals()
	res.ConnectsPerS = float64(res.Up) / res.Seconds
	if res.Up > 0 {
		res.CPUPerLogin = res.ServerCPU / float64(res.Up) * 1e6
	}
	if profiled != nil {
		<-profiled
	}

	// Let deferred work settle, then read the server with a fresh GC.
	time.Sleep(2 * time.Second)
	if res.After, err = t.stats(ctx, true); err != nil {
		return nil, err
	}
	res.KernelAfter = readKernel()
	if res.Up > 0 {
		n := float64(res.Up)
		res.RSSPerConn = (float64(res.After.RSS) - float64(res.Before.RSS)) / n
		res.HeapPerConn = (float64(res.After.HeapInuse) - float64(res.Before.HeapInuse)) / n
		// Both ends of each loopback connection are in the kernel's count.
		res.KernelPerSock = (float64(res.KernelAfter.SlabBytes-res.KernelBefore.SlabBytes) +
			4096*float64(res.KernelAfter.TCPMemPages-res.KernelBefore.TCPMemPages)) / (2 * n)
		res.Projection = Projection{
			UserBytes:   res.RSSPerConn * 1e6,
			KernelBytes: res.KernelPerSock * 1e6,
			Profile:     "chatd sysctl print --os linux --conns 1000000",
		}
	}
	if err := os.MkdirAll(cfg.Report, 0o755); err == nil {
		res.Profile = filepath.Join(cfg.Report, fmt.Sprintf("heap-connect-%d.pprof", res.Up))
		if err := t.saveProfile(ctx, res.Profile); err != nil {
			res.Profile = ""
		}
	}
	if st, err := t.stats(ctx, false); err == nil {
		res.Samples = append(res.Samples, Point{X: float64(res.Up), Y: float64(st.RSS) / (1 << 20)})
	}
	// RSS per connection against connections: the same samples over the
	// baseline, from 500 connections on (below, the baseline's noise
	// dominates), so a fixed cost per connection shows as a flat line.
	var perConn []Point
	for _, p := range res.Samples {
		if p.X >= 500 {
			perConn = append(perConn, Point{X: p.X, Y: (p.Y*(1<<20) - float64(res.Before.RSS)) / p.X})
		}
	}
	res.Plot, _ = writePlot(cfg.Report, fmt.Sprintf("connect-%d.html", res.Up), "chatd bench connect",
		chart(fmt.Sprintf("server RSS while %d connections log in (%.0f B per connection settled)", res.Up, res.RSSPerConn),
			"connections", "RSS (MiB)", false, Series{Name: "server RSS", Points: res.Samples}),
		chart("server RSS per connection against connections (over the baseline, during the ramp)",
			"connections", "bytes per connection", false, Series{Name: "RSS per connection", Points: perConn}))
	if cfg.Hold > 0 {
		fmt.Fprintf(os.Stderr, "holding %d connections for %v\n", res.Up, cfg.Hold)
		select {
		case <-time.After(cfg.Hold):
		case <-ctx.Done():
		}
	}
	return res, nil
}

// Print writes the result as a table, or JSON with cfg.JSON.
func (r *ConnectResult) Print(cfg Config) {
	if printJSON(&cfg, r) {
		return
	}
	w := cfg.Out
	fmt.Fprintf(w, "connections          %d of %d up in %.2fs (%.0f connects/s, %s)\n", r.Up, r.Conns, r.Seconds, r.ConnectsPerS, r.Transport)
	fmt.Fprintf(w, "server CPU per login %.1f µs (%.2f CPU-s over the storm, from %s)\n", r.CPUPerLogin, r.ServerCPU, r.CPUSource)
	if len(r.Failed) > 0 {
		keys := make([]string, 0, len(r.Failed))
		for k := range r.Failed {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s=%d", k, r.Failed[k]))
		}
		fmt.Fprintf(w, "failures             %s\n", strings.Join(parts, " "))
	}
	fmt.Fprintf(w, "server RSS           %s -> %s  (%.0f B per connection)\n", mib(r.Before.RSS), mib(r.After.RSS), r.RSSPerConn)
	fmt.Fprintf(w, "server Go heap       %s -> %s  (%.0f B per connection)\n", mib(r.Before.HeapInuse), mib(r.After.HeapInuse), r.HeapPerConn)
	fmt.Fprintf(w, "server goroutines    %d -> %d\n", r.Before.Goroutines, r.After.Goroutines)
	fmt.Fprintf(w, "kernel per socket    %.0f B (TCP slab %d B/object, %d buffer pages in use)\n", r.KernelPerSock, r.KernelAfter.TCPSlabObj, r.KernelAfter.TCPMemPages)
	fmt.Fprintf(w, "1M connections       %.1f GiB user space + %.1f GiB kernel; tune with: %s\n",
		r.Projection.UserBytes/(1<<30), r.Projection.KernelBytes/(1<<30), r.Projection.Profile)
	if r.Profile != "" {
		fmt.Fprintf(w, "heap profile         %s (go tool pprof -sample_index=inuse_space -top %s)\n", r.Profile, r.Profile)
	}
	if r.CPUProfile != "" {
		fmt.Fprintf(w, "cpu profile          %s (go tool pprof -top %s)\n", r.CPUProfile, r.CPUProfile)
	}
	if r.Plot != "" {
		fmt.Fprintf(w, "plot                 %s\n", r.Plot)
	}
	fmt.Fprintf(w, "BenchmarkConnect/conns=%d/transport=%s 1 %.0f connects/s %.1f cpu-us/login %.0f rss-B/conn %.0f heap-B/conn\n",
		r.Conns, r.Transport, r.ConnectsPerS, r.CPUPerLogin, r.RSSPerConn, r.HeapPerConn)
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func rateText(r int) string {
	if r == 0 {
		return "flat out"
	}
	return fmt.Sprintf("%d/s", r)
}
