package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/proc"
)

// RouteConfig shapes the route scenario.
type RouteConfig struct {
	Pairs    int           // sender/receiver pairs
	Window   int           // messages in flight per pair (sent, not yet delivered)
	Rate     int           // offered msgs/s over all pairs; 0 = flat out
	Body     int           // body bytes (at least 16: the send and scheduled times travel in it)
	Duration time.Duration // measured time, after a 1 s warm-up
	// SentDelivered has the senders ask for SENT_DELIVERED (OPTIONS), as
	// the Go client does: a message acknowledged live is answered by one
	// frame, not a SENT and a RECEIPT entry the sender acknowledges.
	SentDelivered bool
}

// RouteResult is what the route scenario measures. Latency is from the
// SEND leaving the sender; at a fixed rate also from the time it was
// scheduled to leave, which counts the wait for window room as well.
type RouteResult struct {
	RouteConfig
	Transport      string   `json:"transport"`
	Delivered      int64    `json:"delivered"`
	Seconds        float64  `json:"seconds"`
	MsgsPerSec     float64  `json:"delivered_msgs_per_second"`
	Sent           int64    `json:"sent_acks"`
	Receipts       int64    `json:"delivered_receipts"`
	P50us          int64    `json:"latency_p50_us"`
	P99us          int64    `json:"latency_p99_us"`
	P999us         int64    `json:"latency_p999_us"`
	Maxus          int64    `json:"latency_max_us"`
	SchedP50us     int64    `json:"sched_latency_p50_us,omitempty"`
	SchedP99us     int64    `json:"sched_latency_p99_us,omitempty"`
	SchedP999us    int64    `json:"sched_latency_p999_us,omitempty"`
	SchedMaxus     int64    `json:"sched_latency_max_us,omitempty"`
	CPUPerMillion  float64  `json:"server_cpu_seconds_per_million"`
	SyscallsPer    float64  `json:"server_rw_syscalls_per_message"` // syscr + syscw: file I/O; the server's sockets use recvfrom/sendto (see Work)
	ToolCPUPerM    float64  `json:"tool_cpu_seconds_per_million"`
	ToolSyscallsPr float64  `json:"tool_rw_syscalls_per_message"`
	Stalls         Stalls   `json:"tail_in_time"`
	Work           Work     `json:"server_work_per_message"`
	ServerBefore   Stats    `json:"server_before"`
	ServerAfter    Stats    `json:"server_after"`
	Histogram      []Bucket `json:"latency_histogram"`
	Plot           string   `json:"plot"`
}

// Bucket is one bar of the latency histogram.
type Bucket struct {
	UpToUs int64 `json:"up_to_us"`
	Count  int64 `json:"count"`
}

// pair is one sender/receiver pair's tally. The counters are read live
// for the progress line; the samples only after the run.
type pair struct {
	sent, receipts, delivered atomic.Int64
	lat, sched, at            []int64 // us, measured deliveries (receiver's); at: sent, since epoch
}

// Route runs Pairs sender/receiver pairs. Each sender keeps at most Window
// messages in flight (sent, not yet delivered) and, at a fixed rate, sends
// on its own schedule (sender i's k-th message is due at
// start + (i/Pairs + k) * Pairs/Rate); when the window is full at the due
// time the message waits for room. Receivers acknowledge deliveries and
// senders the delivered receipts the way the client package does
// (cumulative, at most one ACK per 10 ms per connection plus window and
// byte bounds), so every message goes through the whole sent/delivered
// cycle and leaves the inbox. Writes are queued and flushed once per turn.
func Route(ctx context.Context, cfg Config, rc RouteConfig) (*RouteResult, error) {
	cfg.setDefaults()
	rc.Body = max(rc.Body, 16)
	rc.Window = max(rc.Window, 1)
	t, err := startTarget(ctx, &cfg)
	if err != nil {
		return nil, err
	}
	defer t.stop()
	run := fmt.Sprintf("r%d-", time.Now().UnixNano()%1e6)
	fmt.Fprintf(os.Stderr, "route: %d pairs, window %d, %d B bodies, %s, %v\n", rc.Pairs, rc.Window, rc.Body, msgRate(rc.Rate), rc.Duration)

	conns, err := registerAll(ctx, t.addr, 2*rc.Pairs, run, cfg.Noise)
	if err != nil {
		return nil, fmt.Errorf("bench: route setup: %w", err)
	}
	defer closeAll(conns)
	return runRoute(ctx, cfg, rc, conns, func(ctx context.Context) (Stats, error) { return t.stats(ctx, false) })
}

// runRoute runs the route load over conns (sender, receiver, sender,
// receiver...), reading the servers' counters with stats before and after
// the measured time.
func runRoute(ctx context.Context, cfg Config, rc RouteConfig, conns []*rawConn, stats func(context.Context) (Stats, error)) (*RouteResult, error) {
	res := &RouteResult{RouteConfig: rc, Transport: transportName(&cfg)}
	rate := msgRate(rc.Rate)
	var err error
	if rc.SentDelivered {
		if err := askSentDelivered(conns); err != nil {
			return nil, err
		}
	}
	var (
		measuring atomic.Bool
		done      = make(chan struct{}) // closed at the end of the run
		pairs     = make([]*pair, rc.Pairs)
		wg        sync.WaitGroup
	)
	epoch := time.Now()
	start := time.Since(epoch) + 10*time.Millisecond // every sender's schedule begins here
	for p := range pairs {
		s, r, tally := conns[2*p], conns[2*p+1], &pair{}
		pairs[p] = tally
		window := make(chan struct{}, rc.Window)
		wg.Add(3)
		go func() {
			defer wg.Done()
			routeSender(s, r.w.User, p, rc, epoch, start, window, done)
		}()
		go func() { // sender's reader: SENT and delivered receipts
			defer wg.Done()
			var rcpt codec.Receipt
			for {
				tp, b, err := s.next()
				if err != nil {
					return
				}
				switch tp {
				case codec.TypeSent:
					tally.sent.Add(1)
				case codec.TypeSentDelivered: // SENT and its receipt, nothing to acknowledge
					tally.sent.Add(1)
					tally.receipts.Add(1)
				case codec.TypeReceipt:
					if rcpt.Decode(b) == nil {
						tally.receipts.Add(int64(rcpt.IDs.Len()))
						s.entry(rcpt.Seq, 64+16*rcpt.IDs.Len(), false)
					}
				}
				if !s.buffered() && s.endTurn() != nil {
					return
				}
			}
		}()
		go func() { // receiver: record latency, free window, acknowledge
			defer wg.Done()
			var d codec.Deliver
			for {
				tp, b, err := r.next()
				if err != nil {
					return
				}
				if tp == codec.TypeDeliver && d.Decode(b) == nil && len(d.Body) >= 16 {
					now := time.Since(epoch)
					if measuring.Load() {
						sentAt := time.Duration(binary.BigEndian.Uint64(d.Body))
						dueAt := time.Duration(binary.BigEndian.Uint64(d.Body[8:]))
						tally.lat = append(tally.lat, max(1, (now-sentAt).Microseconds()))
						tally.sched = append(tally.sched, max(1, (now-dueAt).Microseconds()))
						tally.at = append(tally.at, sentAt.Microseconds())
						tally.delivered.Add(1)
					}
					freeSlot(window)
					r.entry(d.Seq, 64+len(d.Body), true)
				}
				if !r.buffered() && r.endTurn() != nil {
					return
				}
			}
		}()
	}
	delivered := func() (n int64) {
		for _, p := range pairs {
			n += p.delivered.Load()
		}
		return n
	}

	time.Sleep(time.Second) // warm-up
	if res.ServerBefore, err = stats(ctx); err != nil {
		close(done)
		return nil, err
	}
	tool0, sys0 := proc.CPUSeconds(), proc.RWSyscalls()
	measuring.Store(true)
	res.Seconds = measure("route", rc.Duration, delivered, "msgs/s")
	measuring.Store(false)
	tool1, sys1 := proc.CPUSeconds(), proc.RWSyscalls()
	res.Delivered = delivered()
	if res.ServerAfter, err = stats(ctx); err != nil {
		close(done)
		return nil, err
	}
	close(done)
	time.Sleep(200 * time.Millisecond)
	closeAll(conns)
	wg.Wait()

	res.MsgsPerSec = float64(res.Delivered) / res.Seconds
	var lat, sched, at []int64
	for _, p := range pairs {
		res.Sent += p.sent.Load()
		res.Receipts += p.receipts.Load()
		lat, sched, at = append(lat, p.lat...), append(sched, p.sched...), append(at, p.at...)
	}
	res.P50us, res.P99us, res.P999us, res.Maxus = percentiles(slices.Clone(lat)) // lat stays beside at
	res.Stalls = findStalls(at, lat, res.P99us, rc.Rate)
	if rc.Rate > 0 {
		res.SchedP50us, res.SchedP99us, res.SchedP999us, res.SchedMaxus = percentiles(sched)
	}
	if res.Delivered > 0 {
		m := float64(res.Delivered)
		res.CPUPerMillion = (res.ServerAfter.CPUSeconds - res.ServerBefore.CPUSeconds) / m * 1e6
		res.SyscallsPer = float64(res.ServerAfter.Syscalls-res.ServerBefore.Syscalls) / m
		res.ToolCPUPerM = (tool1 - tool0) / m * 1e6
		res.ToolSyscallsPr = float64(sys1-sys0) / m
		res.Work = workPer(res.ServerBefore, res.ServerAfter, m)
	}
	hist := hdrhistogram.New(1, 10_000_000, 3) // microseconds
	for _, v := range lat {
		hist.RecordValue(v)
	}
	var pts, cdf []Point
	var seen int64
	for _, b := range hist.Distribution() {
		if b.Count > 0 {
			res.Histogram = append(res.Histogram, Bucket{UpToUs: b.To, Count: b.Count})
			seen += b.Count
			pts = append(pts, Point{X: float64(b.To), Y: float64(b.Count)})
			cdf = append(cdf, Point{X: float64(b.To), Y: 100 * float64(seen) / float64(hist.TotalCount())})
		}
	}
	title := fmt.Sprintf("%d pairs, window %d, %s: %.0f msgs/s delivered", rc.Pairs, rc.Window, rate, res.MsgsPerSec)
	res.Plot, _ = writePlot(cfg.Report, fmt.Sprintf("route-%d-%d.html", rc.Pairs, rc.Rate), "chatd bench route: "+title,
		percentileChart("latency by percentile (send to deliver)", percentileSeries("send to deliver", hist)),
		chart("latency histogram (send to deliver)", "latency (us, log scale)", "messages", true, Series{Name: "messages", Points: pts}),
		chart("latency distribution", "latency (us, log scale)", "% of messages at or below", true, Series{Name: "cumulative %", Points: cdf}))
	return res, nil
}

// msgRate says a route run's offered rate.
func msgRate(rate int) string {
	if rate > 0 {
		return fmt.Sprintf("%d msgs/s offered", rate)
	}
	return "flat out"
}

// routeSender sends pair p's messages to user to: on its schedule at a
// fixed rate (else flat out), each waiting for room in window. The body
// carries the actual and the scheduled send time (since epoch). Frames
// are queued and written when the sender is about to sleep or wait.
func routeSender(s *rawConn, to uint64, p int, rc RouteConfig, epoch time.Time, start time.Duration, window chan struct{}, done <-chan struct{}) {
	msg := codec.Send{To: to, Body: make([]byte, rc.Body)}
	binary.BigEndian.PutUint64(msg.ID[:8], uint64(p))
	flush := func() { s.flush() }
	sched := newSchedule(start, p, rc.Pairs, rc.Rate)
	for n := uint64(1); ; n++ {
		select {
		case <-done:
			return
		default:
		}
		due := sched.due()
		if rc.Rate > 0 && time.Since(epoch) < due {
			if s.flush() != nil || !sleepUntil(epoch, due, done) {
				return
			}
		}
		if !takeSlot(window, done, flush) {
			return
		}
		now := time.Since(epoch)
		if rc.Rate == 0 {
			due = now
		}
		binary.BigEndian.PutUint64(msg.ID[8:], n)
		binary.BigEndian.PutUint64(msg.Body, uint64(now))
		binary.BigEndian.PutUint64(msg.Body[8:], uint64(due))
		if s.send(&msg, false) != nil {
			return
		}
		sched.advance()
	}
}

// percentiles sorts xs in place and returns its nearest-rank p50, p99,
// p99.9 and maximum (0 for none).
func percentiles(xs []int64) (p50, p99, p999, top int64) {
	if len(xs) == 0 {
		return
	}
	slices.Sort(xs)
	q := func(p float64) int64 {
		i := int(p*float64(len(xs))+0.5) - 1
		return xs[max(0, min(len(xs)-1, i))]
	}
	return q(0.50), q(0.99), q(0.999), xs[len(xs)-1]
}

// Print writes the result as a table, or JSON with cfg.JSON.
func (r *RouteResult) Print(cfg Config) {
	if printJSON(&cfg, r) {
		return
	}
	w := cfg.Out
	fmt.Fprintf(w, "delivered        %d messages in %.1fs: %.0f msgs/s (sent acks %d, delivered receipts %d over the run; %s)\n",
		r.Delivered, r.Seconds, r.MsgsPerSec, r.Sent, r.Receipts, r.Transport)
	fmt.Fprintf(w, "latency          p50 %.2f ms  p99 %.2f ms  p99.9 %.2f ms  max %.2f ms (send to deliver)\n",
		float64(r.P50us)/1000, float64(r.P99us)/1000, float64(r.P999us)/1000, float64(r.Maxus)/1000)
	if r.Rate > 0 {
		fmt.Fprintf(w, "                 p50 %.2f ms  p99 %.2f ms  p99.9 %.2f ms  max %.2f ms (scheduled time to deliver)\n",
			float64(r.SchedP50us)/1000, float64(r.SchedP99us)/1000, float64(r.SchedP999us)/1000, float64(r.SchedMaxus)/1000)
	}
	// The server's socket reads and writes are recvfrom and sendto, which
	// /proc/PID/io does not count: its syscr + syscw are file I/O (the
	// WAL's writes) and anything else made with read/write. The socket
	// calls are in the server work line (turns, client writes).
	fmt.Fprintf(w, "server cost      %.1f CPU-s per million messages, %.2f read/write(2) syscalls per message (files; its sockets use recvfrom/sendto: see server work)\n", r.CPUPerMillion, r.SyscallsPer)
	fmt.Fprintf(w, "load generator   %.1f CPU-s per million messages, %.2f read/write syscalls per message (this process, same window)\n", r.ToolCPUPerM, r.ToolSyscallsPr)
	r.Stalls.print(w)
	r.Work.print(w)
	if r.Plot != "" {
		fmt.Fprintf(w, "plot             %s\n", r.Plot)
	}
	fmt.Fprintf(w, "BenchmarkRoute/pairs=%d/window=%d/rate=%d 1 %.0f msgs/s %d p50-us %d p99-us %d p99.9-us %.1f cpu-s/M %.1f tool-cpu-s/M\n",
		r.Pairs, r.Window, r.Rate, r.MsgsPerSec, r.P50us, r.P99us, r.P999us, r.CPUPerMillion, r.ToolCPUPerM)
}

// askSentDelivered sends OPTIONS with SENT_DELIVERED on every sender of
// conns (sender, receiver, ...) and waits for each OK, before any SEND.
func askSentDelivered(conns []*rawConn) error {
	for i := 0; i < len(conns); i += 2 {
		if err := conns[i].send(&codec.Options{Req: 1, Flags: codec.OptionSentDelivered}, true); err != nil {
			return fmt.Errorf("bench: OPTIONS: %w", err)
		}
	}
	for i := 0; i < len(conns); i += 2 {
		t, body, err := conns[i].next()
		if err != nil {
			return fmt.Errorf("bench: OPTIONS: %w", err)
		}
		if t != codec.TypeOK {
			var e codec.Error
			e.Decode(body)
			return fmt.Errorf("bench: OPTIONS answered %v %v", t, &e)
		}
	}
	return nil
}
