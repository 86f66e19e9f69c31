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

// GroupConfig shapes the group scenario.
type GroupConfig struct {
	Groups   int           // groups
	Members  int           // members per group (each a connection)
	Senders  int           // members of each group that send
	Window   int           // group messages per sender waiting for SENT
	Rate     int           // offered group msgs/s over all senders; 0 = flat out
	Body     int           // body bytes (at least 8)
	Duration time.Duration // measured time, after a 1 s warm-up
}

// GroupResult is what the group scenario measures.
type GroupResult struct {
	GroupConfig
	Sent          int64   `json:"group_messages_sent"`
	Deliveries    int64   `json:"fanout_deliveries"`
	Seconds       float64 `json:"seconds"`
	MsgsPerSec    float64 `json:"group_msgs_per_second"`
	DeliveriesSec float64 `json:"fanout_deliveries_per_second"`
	P50us         int64   `json:"latency_p50_us"`
	P99us         int64   `json:"latency_p99_us"`
	P999us        int64   `json:"latency_p999_us"`
	CPUPerMillion float64 `json:"server_cpu_seconds_per_million_deliveries"`
}

// Group runs Groups groups of Members connected members; Senders members
// of each group send, and every member acknowledges what it receives
// (so each message also produces delivered receipts for its sender).
// Latency is from the SEND to each member's DELIVER.
func Group(ctx context.Context, cfg Config, gc GroupConfig) (*GroupResult, error) {
	cfg.setDefaults()
	gc.Body = max(gc.Body, 8)
	gc.Senders = min(gc.Senders, gc.Members)
	t, err := startTarget(ctx, &cfg)
	if err != nil {
		return nil, err
	}
	defer t.stop()
	res := &GroupResult{GroupConfig: gc}
	run := fmt.Sprintf("g%d-", time.Now().UnixNano()%1e6)
	n := gc.Groups * gc.Members
	fmt.Fprintf(os.Stderr, "group: %d groups of %d, %d senders each, window %d, %d B\n", gc.Groups, gc.Members, gc.Senders, gc.Window, gc.Body)
	conns, err := registerAll(ctx, t.addr, n, run, cfg.Noise)
	if err != nil {
		return nil, fmt.Errorf("bench: group setup: %w", err)
	}
	defer closeAll(conns)
	// Each group's first member creates it with the others.
	gids := make([]uint64, gc.Groups)
	for g := range gids {
		owner := conns[g*gc.Members]
		var users codec.UserList
		for m := 1; m < gc.Members; m++ {
			users = users.AppendUser(conns[g*gc.Members+m].w.User)
		}
		owner.send(&codec.GroupCreate{Req: 1, Name: []byte(fmt.Sprintf("bench%d", g)), Users: users}, true)
		for {
			tp, b, err := owner.next()
			if err != nil {
				return nil, err
			}
			if tp == codec.TypeGroupInfo {
				var info codec.GroupInfo
				info.Decode(b)
				gids[g] = info.Group
				break
			}
		}
	}

	var (
		measuring            atomic.Bool
		done                 = make(chan struct{}) // closed at the end of the run
		deliveries, sentAcks atomic.Int64
		hmu                  sync.Mutex
		hist                 = hdrhistogram.New(1, 60_000_000, 3)
		wg                   sync.WaitGroup
	)
	epoch := time.Now()
	start := time.Since(epoch) + 10*time.Millisecond // every sender's schedule begins here
	windows := make([]chan struct{}, n)
	for i, c := range conns {
		windows[i] = make(chan struct{}, gc.Window)
		wg.Add(1)
		go func(c *rawConn, window chan struct{}) { // every member: read, record, acknowledge
			defer wg.Done()
			var d codec.Deliver
			lh := hdrhistogram.New(1, 60_000_000, 3)
			defer func() { hmu.Lock(); hist.Merge(lh); hmu.Unlock() }()
			for {
				tp, b, err := c.next()
				if err != nil {
					return
				}
				switch tp {
				case codec.TypeDeliver:
					if d.Decode(b) == nil {
						c.entry(d.Seq, 64+len(d.Body), true)
						if measuring.Load() {
							lh.RecordValue(max(1, (time.Since(epoch) - time.Duration(binary.BigEndian.Uint64(d.Body))).Microseconds()))
							deliveries.Add(1)
						}
					}
				case codec.TypeReceipt, codec.TypeGroupEvent:
					if len(b) >= 8 {
						c.entry(binary.BigEndian.Uint64(b), 64+len(b), tp == codec.TypeGroupEvent)
					}
				case codec.TypeSent:
					if measuring.Load() {
						sentAcks.Add(1)
					}
					freeSlot(window)
				}
				if !c.buffered() && c.endTurn() != nil {
					return
				}
			}
		}(c, windows[i])
	}
	for g := 0; g < gc.Groups; g++ {
		for k := 0; k < gc.Senders; k++ {
			i := g*gc.Members + k
			wg.Add(1)
			go func(c *rawConn, window chan struct{}, gid uint64) { // on its own schedule, like route's senders
				defer wg.Done()
				msg := codec.Send{Flags: codec.FlagGroup, To: gid, Body: make([]byte, gc.Body)}
				binary.BigEndian.PutUint64(msg.ID[:8], uint64(i))
				sched := newSchedule(start, g*gc.Senders+k, gc.Groups*gc.Senders, gc.Rate)
				flush := func() { c.flush() }
				for seq := uint64(1); ; seq++ {
					select {
					case <-done:
						return
					default:
					}
					if due := sched.due(); gc.Rate > 0 && time.Since(epoch) < due {
						if c.flush() != nil || !sleepUntil(epoch, due, done) {
							return
						}
					}
					if !takeSlot(window, done, flush) {
						return
					}
					binary.BigEndian.PutUint64(msg.ID[8:], seq)
					binary.BigEndian.PutUint64(msg.Body, uint64(time.Since(epoch)))
					if c.send(&msg, false) != nil {
						return
					}
					sched.advance()
				}
			}(conns[i], windows[i], gids[g])
		}
	}

	time.Sleep(time.Second)
	before, err := t.stats(ctx, false)
	if err != nil {
		close(done)
		return nil, err
	}
	measuring.Store(true)
	res.Seconds = measure("group", gc.Duration, deliveries.Load, "deliveries/s")
	measuring.Store(false)
	after, err := t.stats(ctx, false)
	if err != nil {
		close(done)
		return nil, err
	}
	close(done)
	time.Sleep(200 * time.Millisecond)
	closeAll(conns)
	wg.Wait()
	res.Deliveries, res.Sent = deliveries.Load(), sentAcks.Load()
	res.MsgsPerSec = float64(res.Sent) / res.Seconds
	res.DeliveriesSec = float64(res.Deliveries) / res.Seconds
	res.P50us, res.P99us, res.P999us = hist.ValueAtQuantile(50), hist.ValueAtQuantile(99), hist.ValueAtQuantile(99.9)
	if res.Deliveries > 0 {
		res.CPUPerMillion = (after.CPUSeconds - before.CPUSeconds) / float64(res.Deliveries) * 1e6
	}
	return res, nil
}

// Print writes the result as a table, or JSON with cfg.JSON.
func (r *GroupResult) Print(cfg Config) {
	if printJSON(&cfg, r) {
		return
	}
	w := cfg.Out
	fmt.Fprintf(w, "group messages   %d in %.1fs: %.0f msgs/s into groups of %d (SENT after every member's entry is durable)\n",
		r.Sent, r.Seconds, r.MsgsPerSec, r.Members)
	fmt.Fprintf(w, "fan-out          %d deliveries: %.0f deliveries/s\n", r.Deliveries, r.DeliveriesSec)
	fmt.Fprintf(w, "latency          p50 %.2f ms  p99 %.2f ms  p99.9 %.2f ms (send to each member's deliver)\n",
		float64(r.P50us)/1000, float64(r.P99us)/1000, float64(r.P999us)/1000)
	fmt.Fprintf(w, "server cost      %.1f CPU-s per million deliveries\n", r.CPUPerMillion)
	fmt.Fprintf(w, "BenchmarkGroup/groups=%d/members=%d/senders=%d 1 %.0f deliveries/s %d p99-us %.1f cpu-s/M\n",
		r.Groups, r.Members, r.Senders, r.DeliveriesSec, r.P99us, r.CPUPerMillion)
}
