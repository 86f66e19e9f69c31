package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/chatd/chatd/codec"
)

// RouteConfig shapes the route scenario.
type RouteConfig struct {
	Pairs    int           // sender/receiver pairs
	Window   int           // messages in flight per pair (sent, not yet delivered)
	Rate     int           // offered msgs/s over all pairs; 0 = flat out
	Body     int           // body bytes (at least 8: the send time travels in it)
	Duration time.Duration // measured time, after a 1 s warm-up
}

// RouteResult is what the route scenario measures.
type RouteResult struct {
	RouteConfig
	Delivered     int64    `json:"delivered"`
	Seconds       float64  `json:"seconds"`
	MsgsPerSec    float64  `json:"delivered_msgs_per_second"`
	Sent          int64    `json:"sent_acks"`
	Receipts      int64    `json:"delivered_receipts"`
	P50us         int64    `json:"latency_p50_us"`
	P99us         int64    `json:"latency_p99_us"`
	P999us        int64    `json:"latency_p999_us"`
	Maxus         int64    `json:"latency_max_us"`
	CPUPerMillion float64  `json:"server_cpu_seconds_per_million"`
	SyscallsPer   float64  `json:"server_rw_syscalls_per_message"`
	ServerBefore  Stats    `json:"server_before"`
	ServerAfter   Stats    `json:"server_after"`
	Histogram     []Bucket `json:"latency_histogram"`
	Plot          string   `json:"plot"`
}

// Bucket is one bar of the latency histogram.
type Bucket struct {
	UpToUs int64 `json:"up_to_us"`
	Count  int64 `json:"count"`
}

// Route runs Pairs sender/receiver pairs. Each sender keeps at most Window
// messages in flight (sent, not yet delivered); each receiver
// acknowledges deliveries, and each sender acknowledges the delivered
// receipts that come back, so every message goes through the whole
// sent/delivered cycle and leaves the inbox. Latency is end to end: from
// the SEND leaving the sender to the DELIVER reaching the receiver.
func Route(ctx context.Context, cfg Config, rc RouteConfig) (*RouteResult, error) {
	cfg.setDefaults()
	if rc.Body < 8 {
		rc.Body = 8
	}
	t, err := startTarget(ctx, &cfg)
	if err != nil {
		return nil, err
	}
	defer t.stop()
	res := &RouteResult{RouteConfig: rc}
	run := fmt.Sprintf("r%d-", time.Now().UnixNano()%1e6)
	rate := "flat out"
	if rc.Rate > 0 {
		rate = fmt.Sprintf("%d msgs/s offered", rc.Rate)
	}
	fmt.Fprintf(os.Stderr, "route: %d pairs, window %d, %d B bodies, %s, %v\n", rc.Pairs, rc.Window, rc.Body, rate, rc.Duration)

	conns, err := registerAll(ctx, t.addr, 2*rc.Pairs, run, cfg.Noise)
	if err != nil {
		return nil, fmt.Errorf("bench: route setup: %w", err)
	}
	defer closeAll(conns)
	senders, receivers := make([]*rawConn, rc.Pairs), make([]*rawConn, rc.Pairs)
	for p := range senders {
		senders[p], receivers[p] = conns[2*p], conns[2*p+1]
	}

	var (
		measuring atomic.Bool
		stopping  atomic.Bool
		delivered atomic.Int64
		sent      atomic.Int64
		receipts  atomic.Int64
		hmu       sync.Mutex
		hist      = hdrhistogram.New(1, 10_000_000, 3) // microseconds
		wg        sync.WaitGroup
	)
	epoch := time.Now()
	credit := startPacer(rc.Rate, &stopping)

	for p := 0; p < rc.Pairs; p++ {
		s, r := senders[p], receivers[p]
		window := make(chan struct{}, rc.Window)
		to := r.w.User
		wg.Add(3)
		go func() { // sender: SEND while the window has room
			defer wg.Done()
			id := codec.MsgID{}
			binary.BigEndian.PutUint64(id[:8], uint64(p))
			body := make([]byte, rc.Body)
			var n uint64
			for !stopping.Load() {
				if !acquire(window, credit) {
					continue
				}
				n++
				binary.BigEndian.PutUint64(id[8:], n)
				binary.BigEndian.PutUint64(body, uint64(time.Since(epoch)))
				s.send(&codec.Send{ID: id, To: to, Body: body}, len(window) == cap(window) || rc.Rate > 0)
			}
		}()
		go func() { // sender's reader: SENT and delivered receipts (acknowledged)
			defer wg.Done()
			var ack codec.Ack
			for {
				tp, b, err := s.next()
				if err != nil {
					return
				}
				switch tp {
				case codec.TypeSent:
					sent.Add(1)
				case codec.TypeReceipt:
					var rcpt codec.Receipt
					if rcpt.Decode(b) == nil {
						receipts.Add(int64(rcpt.IDs.Len()))
						ack.Seq = rcpt.Seq
					}
				}
				if ack.Seq != 0 && !s.buffered() {
					s.send(&ack, true)
					ack.Seq = 0
				}
			}
		}()
		go func() { // receiver: record latency, free window, acknowledge
			defer wg.Done()
			var d codec.Deliver
			var pending uint64
			lh := hdrhistogram.New(1, 10_000_000, 3)
			defer func() {
				hmu.Lock()
				hist.Merge(lh)
				hmu.Unlock()
			}()
			for {
				tp, b, err := r.next()
				if err != nil {
					return
				}
				if tp != codec.TypeDeliver || d.Decode(b) != nil {
					continue
				}
				lat := time.Since(epoch) - time.Duration(binary.BigEndian.Uint64(d.Body))
				if measuring.Load() {
					lh.RecordValue(max(1, lat.Microseconds()))
					delivered.Add(1)
				}
				<-window
				pending = d.Seq
				if !r.buffered() {
					r.send(&codec.Ack{Seq: pending}, true)
					pending = 0
				}
			}
		}()
	}

	time.Sleep(time.Second) // warm-up
	if res.ServerBefore, err = t.stats(ctx, false); err != nil {
		return nil, err
	}
	measuring.Store(true)
	res.Seconds = measure("route", rc.Duration, delivered.Load, "msgs/s")
	measuring.Store(false)
	res.Delivered = delivered.Load()
	if res.ServerAfter, err = t.stats(ctx, false); err != nil {
		return nil, err
	}
	stopping.Store(true)
	time.Sleep(200 * time.Millisecond)
	closeAll(conns)
	wg.Wait()

	res.MsgsPerSec = float64(res.Delivered) / res.Seconds
	res.Sent, res.Receipts = sent.Load(), receipts.Load()
	res.P50us, res.P99us = hist.ValueAtQuantile(50), hist.ValueAtQuantile(99)
	res.P999us, res.Maxus = hist.ValueAtQuantile(99.9), hist.Max()
	if res.Delivered > 0 {
		res.CPUPerMillion = (res.ServerAfter.CPUSeconds - res.ServerBefore.CPUSeconds) / float64(res.Delivered) * 1e6
		res.SyscallsPer = float64(res.ServerAfter.Syscalls-res.ServerBefore.Syscalls) / float64(res.Delivered)
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
		chart("latency histogram (send to deliver)", "latency (us, log scale)", "messages", true, Series{Name: "messages", Points: pts}),
		chart("latency distribution", "latency (us, log scale)", "% of messages at or below", true, Series{Name: "cumulative %", Points: cdf}))
	return res, nil
}

// Print writes the result as a table, or JSON with cfg.JSON.
func (r *RouteResult) Print(cfg Config) {
	if printJSON(&cfg, r) {
		return
	}
	w := cfg.Out
	fmt.Fprintf(w, "delivered        %d messages in %.1fs: %.0f msgs/s (sent acks %d, delivered receipts %d over the run)\n",
		r.Delivered, r.Seconds, r.MsgsPerSec, r.Sent, r.Receipts)
	fmt.Fprintf(w, "latency          p50 %.2f ms  p99 %.2f ms  p99.9 %.2f ms  max %.2f ms (send to deliver)\n",
		float64(r.P50us)/1000, float64(r.P99us)/1000, float64(r.P999us)/1000, float64(r.Maxus)/1000)
	fmt.Fprintf(w, "server cost      %.1f CPU-s per million messages, %.2f read/write syscalls per message\n", r.CPUPerMillion, r.SyscallsPer)
	if r.Plot != "" {
		fmt.Fprintf(w, "plot             %s\n", r.Plot)
	}
	fmt.Fprintf(w, "BenchmarkRoute/pairs=%d/window=%d/rate=%d 1 %.0f msgs/s %d p50-us %d p99-us %d p99.9-us %.1f cpu-s/M\n",
		r.Pairs, r.Window, r.Rate, r.MsgsPerSec, r.P50us, r.P99us, r.P999us, r.CPUPerMillion)
}
