package server

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/chatd/chatd/codec"
)

// TestOfflineToOnlineOrder provokes the race between the inbox drain and
// live deliveries: alice sends without pause while bob, with a window of
// 8, logs in, drains part of his backlog, drops, and logs in again, many
// times. Every message must reach bob, and after dropping the duplicates
// a reconnect may repeat, in exactly the order alice sent them.
func TestOfflineToOnlineOrder(t *testing.T) {
	cfg := testConfig(t)
	cfg.Window = 8
	s := startServer(t, cfg)
	alice := register(t, s, "alice")
	bob := register(t, s, "bob")
	bobID, tok := bob.Welcome.User, bob.Welcome.Token
	bob.Close()

	const n = 4000
	sendDone := make(chan struct{})
	go func() {
		defer close(sendDone)
		for i := 0; i < n; i++ {
			if _, err := alice.Send(bobID, []byte(fmt.Sprint(i)), true); err != nil {
				t.Error(err)
				return
			}
			if i%40 == 39 {
				time.Sleep(time.Millisecond) // keep sending across bob's reconnects
			}
		}
	}()

	seen := map[codec.MsgID]bool{}
	want := 0
	for round := 0; want < n; round++ {
		if round > 200 {
			t.Fatalf("stuck at message %d of %d", want, n)
		}
		c := dial(t, s)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if _, err := c.Resume(ctx, tok); err != nil {
			t.Fatal(err)
		}
		cancel()
		// Take a bounded number of entries, then drop the connection
		// (every third round without acknowledging the last few).
		take := 50 + round%7*40
		for k := 0; k < take && want < n; k++ {
			d := until[*codec.Deliver](t, c)
			if !seen[d.ID] {
				seen[d.ID] = true
				if string(d.Body) != fmt.Sprint(want) {
					t.Fatalf("round %d: got %q, want %d", round, d.Body, want)
				}
				want++
			}
			if round%3 != 0 || k < take-5 {
				c.Ack(d.Seq, true)
			}
		}
		c.Close()
		waitFor(t, func() bool { _, online := s.sessions.Lookup(bobID); return !online })
	}
	<-sendDone
}
