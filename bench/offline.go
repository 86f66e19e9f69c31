package bench

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
)

// OfflineResult is what the offline scenario measures.
type OfflineResult struct {
	Recipients   int     `json:"recipients"`
	PerRecipient int     `json:"messages_per_recipient"`
	Senders      int     `json:"senders"`
	Messages     int     `json:"messages"`
	StoreSeconds float64 `json:"store_seconds"`
	StorePerSec  float64 `json:"store_msgs_per_second"`
	DiskBytes    int64   `json:"data_folder_bytes"`
	BytesPerMsg  float64 `json:"disk_bytes_per_message"`
	DrainSeconds float64 `json:"drain_seconds"`
	DrainPerSec  float64 `json:"drain_msgs_per_second"`
	DrainP50ms   float64 `json:"time_to_drain_p50_ms"`
	DrainP99ms   float64 `json:"time_to_drain_p99_ms"`
	DrainMaxms   float64 `json:"time_to_drain_max_ms"`
	Server       Stats   `json:"server_after"`
}

// Offline stores Recipients x PerRecipient messages for offline
// recipients, then has every recipient log in at once and drain its inbox,
// acknowledging as it goes.
func Offline(ctx context.Context, cfg Config, recipients, perRecipient, senders, bodySize int) (*OfflineResult, error) {
	cfg.setDefaults()
	cfg.ServerArgs = append([]string{"--inbox-quota", fmt.Sprint(perRecipient + 1000)}, cfg.ServerArgs...)
	t, err := startTarget(ctx, &cfg)
	if err != nil {
		return nil, err
	}
	defer t.stop()
	res := &OfflineResult{Recipients: recipients, PerRecipient: perRecipient, Senders: senders, Messages: recipients * perRecipient}
	run := fmt.Sprintf("o%d-", time.Now().UnixNano()%1e6)
	fmt.Fprintf(os.Stderr, "offline: %d recipients x %d messages of %d B from %d senders\n", recipients, perRecipient, bodySize, senders)

	// Setup: register everyone; recipients go offline again.
	rcpt := make([]codec.Welcome, recipients)
	snd := make([]*client.Conn, senders)
	err = parallel(ctx, recipients+senders, 8, func(i int) error {
		c, err := client.Dial(ctx, t.addr)
		if err != nil {
			return err
		}
		name := fmt.Sprintf("%sr%d", run, i)
		if i >= recipients {
			name = fmt.Sprintf("%ss%d", run, i-recipients)
		}
		w, err := c.Register(ctx, name, "bench-password")
		if err != nil {
			c.Close()
			return err
		}
		if i < recipients {
			rcpt[i] = w
			c.Close()
		} else {
			snd[i-recipients] = c
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("bench: offline setup: %w", err)
	}

	// Store: every sender sends its share round-robin over the
	// recipients, keeping up to 1,024 messages waiting for SENT.
	body := make([]byte, bodySize)
	for i := range body {
		body[i] = byte('a' + i%26)
	}
	bar := newBar("store", res.Messages)
	var stored atomic.Int64
	start := time.Now()
	err = parallel(ctx, senders, senders, func(s int) error {
		c := snd[s]
		share := res.Messages / senders
		if s < res.Messages%senders {
			share++
		}
		inflight := make(chan struct{}, 1024)
		done := make(chan error, 1)
		go func() {
			for n := 0; n < share; n++ {
				f, ok := <-c.Events()
				if !ok {
					done <- c.Err()
					return
				}
				switch f := f.(type) {
				case *codec.Sent:
					<-inflight
					if v := stored.Add(1); v%1000 == 0 {
						bar.set(int(v))
					}
				case *codec.Error:
					done <- f
					return
				default:
					n--
				}
			}
			done <- nil
		}()
		for n := 0; n < share; n++ {
			inflight <- struct{}{}
			to := rcpt[(s+n*senders)%recipients].User
			if _, err := c.Send(to, body, len(inflight) == cap(inflight) || n == share-1 || n%32 == 31); err != nil {
				return err
			}
		}
		return <-done
	})
	res.StoreSeconds, res.StorePerSec = stageDone(bar, stored.Load(), start, res.Messages)
	if err != nil {
		return nil, fmt.Errorf("bench: offline store: %w", err)
	}
	for _, c := range snd {
		c.Close()
	}
	if t.dir != "" {
		res.DiskBytes = dirSize(t.dir)
		res.BytesPerMsg = float64(res.DiskBytes) / float64(res.Messages)
	}

	// Drain: all recipients at once.
	hist := hdrhistogram.New(1, 600_000, 3) // milliseconds
	var hmu sync.Mutex
	bar = newBar("drain", res.Messages)
	var drained atomic.Int64
	start = time.Now()
	err = parallel(ctx, recipients, recipients, func(i int) error {
		t0 := time.Now()
		c, err := client.Dial(ctx, t.addr)
		if err != nil {
			return err
		}
		defer c.Close()
		if _, err := c.Resume(ctx, rcpt[i].Token); err != nil {
			return err
		}
		for got := 0; got < perRecipient; {
			f, ok := <-c.Events()
			if !ok {
				return c.Err()
			}
			d, ok := f.(*codec.Deliver)
			if !ok {
				continue
			}
			got++
			if v := drained.Add(1); v%1000 == 0 {
				bar.set(int(v))
			}
			if got%64 == 0 || got == perRecipient {
				c.Ack(d.Seq, true)
			}
		}
		hmu.Lock()
		hist.RecordValue(max(1, time.Since(t0).Milliseconds()))
		hmu.Unlock()
		return nil
	})
	res.DrainSeconds, res.DrainPerSec = stageDone(bar, drained.Load(), start, res.Messages)
	if err != nil {
		return nil, fmt.Errorf("bench: offline drain: %w", err)
	}
	res.DrainP50ms = float64(hist.ValueAtQuantile(50))
	res.DrainP99ms = float64(hist.ValueAtQuantile(99))
	res.DrainMaxms = float64(hist.Max())
	time.Sleep(500 * time.Millisecond)
	res.Server, _ = t.stats(ctx, false)
	return res, nil
}

// Print writes the result as a table, or JSON with cfg.JSON.
// stageDone ends a stage that has moved n of its total messages since
// start: it completes the stage's progress bar and returns the stage's
// seconds and messages a second.
func stageDone(b *bar, n int64, start time.Time, total int) (secs, perSec float64) {
	secs = time.Since(start).Seconds()
	b.set(int(n))
	b.done()
	return secs, float64(total) / secs
}

func (r *OfflineResult) Print(cfg Config) {
	if printJSON(&cfg, r) {
		return
	}
	w := cfg.Out
	fmt.Fprintf(w, "stored     %d messages in %.2fs: %.0f msgs/s (durable, SENT received)\n", r.Messages, r.StoreSeconds, r.StorePerSec)
	if r.DiskBytes > 0 {
		fmt.Fprintf(w, "on disk    %.1f MiB data folder (WAL included): %.0f B per message\n", float64(r.DiskBytes)/(1<<20), r.BytesPerMsg)
	}
	fmt.Fprintf(w, "drained    %d recipients in %.2fs: %.0f msgs/s\n", r.Recipients, r.DrainSeconds, r.DrainPerSec)
	fmt.Fprintf(w, "time to drain one inbox  p50 %.0f ms  p99 %.0f ms  max %.0f ms\n", r.DrainP50ms, r.DrainP99ms, r.DrainMaxms)
	fmt.Fprintf(w, "BenchmarkOffline/recipients=%d/msgs=%d 1 %.0f store-msgs/s %.0f drain-msgs/s %.0f disk-B/msg %.0f p99-drain-ms\n",
		r.Recipients, r.PerRecipient, r.StorePerSec, r.DrainPerSec, r.BytesPerMsg, r.DrainP99ms)
}

// parallel runs fn(0..n-1) with at most k at once and returns the first error.
func parallel(ctx context.Context, n, k int, fn func(i int) error) error {
	sem := make(chan struct{}, k)
	errc := make(chan error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			if err := fn(i); err != nil {
				errc <- err
			}
		}(i)
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return err
	}
	return ctx.Err()
}

func dirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}
