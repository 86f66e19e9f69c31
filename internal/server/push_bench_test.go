package server

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/push"
)

// BenchmarkOfflineSends measures what Web Push costs the message path:
// senders store messages for offline recipients, each SEND answered by
// SENT, with every recipient subscribed to a local push service
// (pushtest, which checks the JWT and decrypts each push) or with none.
// Each stored entry then marks its recipient due, and the push workers
// encrypt, sign and post one coalesced push per recipient and window
// beside the routing. The window is 100 ms (the default is 2 s) so that
// pushes flow at about the rate of the recipients:
//
//	go test -run '^$' -bench BenchmarkOfflineSends -benchtime 20000x -count 3 ./internal/server
//
// It reports msgs/s and, with subscriptions, pushes/s posted during the
// run; the two sub-benchmarks alternate under -count.
func BenchmarkOfflineSends(b *testing.B) {
	for _, subscribed := range []bool{false, true} {
		b.Run(fmt.Sprintf("push=%v", subscribed), func(b *testing.B) { offlineSends(b, subscribed) })
	}
}

func offlineSends(b *testing.B, subscribed bool) {
	const recipients, senders, window = 200, 16, 32
	cfg := testConfig(b)
	cfg.Push = push.Config{Policy: push.Policy{AllowHTTPLoopback: true}, Window: 100 * time.Millisecond}
	s, recv := startPush(b, cfg)
	ids := make([]uint64, recipients)
	for i := range ids {
		name := fmt.Sprintf("r%03d", i)
		c := register(b, s, name)
		if subscribed {
			d := recv.Device(name)
			if err := c.PushSubscribe(ctx10(b), d.Endpoint, d.P256dh, d.Auth); err != nil {
				b.Fatal(err)
			}
		}
		ids[i] = c.Welcome.User
		c.Close()
	}
	for _, u := range ids {
		waitFor(b, func() bool { return !s.online(u) })
	}
	body := make([]byte, 100)
	var wg sync.WaitGroup
	per := (b.N + senders - 1) / senders
	conns := make([]*client.Conn, senders)
	for i := range conns {
		conns[i] = register(b, s, fmt.Sprintf("s%02d", i))
	}
	before := len(recv.Pushes())
	b.ResetTimer()
	start := time.Now()
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			inflight := 0
			for sent, got := 0, 0; got < per; {
				for inflight < window && sent < per {
					sent++
					inflight++
					if _, err := c.Send(ids[(i*per+sent)%recipients], body, inflight == window || sent == per); err != nil {
						b.Error(err)
						return
					}
				}
				if !nextSent(c) {
					b.Error("a sender's connection ended")
					return
				}
				inflight--
				got++
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(per*senders)/elapsed.Seconds(), "msgs/s")
	if subscribed {
		b.ReportMetric(float64(len(recv.Pushes())-before)/elapsed.Seconds(), "pushes/s")
	}
	b.ReportMetric(0, "ns/op")
}

// nextSent waits for c's next SENT, passing over other frames; false if
// the connection ends or nothing comes for 10 s. For goroutines other than
// the benchmark's, which must not call Fatal.
func nextSent(c *client.Conn) bool {
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case f, ok := <-c.Events():
			if !ok {
				return false
			}
			if _, sent := f.(*codec.Sent); sent {
				return true
			}
		case <-timeout.C:
			return false
		}
	}
}
