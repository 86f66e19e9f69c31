package server

import (
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
	adminpkg "github.com/chatd/chatd/internal/admin"
)

// TestCrashLosesNothingAcknowledgedLive is the crash test with the
// recipient online and acknowledging, so that most messages are delivered
// live and answered SENT without ever being stored: the server is killed
// with kill -9 mid-stream twice, and every message that got SENT must have
// reached the recipient, before the kill or from its inbox after, with
// each sender's messages first delivered in the order sent.
func TestCrashLosesNothingAcknowledgedLive(t *testing.T) {
	t.Parallel()
	dir, addr, ctx := crashStart(t)
	admin := freeAddr(t)
	const senders = 4

	var (
		mu    sync.Mutex
		acked = map[codec.MsgID]string{} // id -> body, for every SENT
		got   = map[codec.MsgID]bool{}   // delivered to the recipient, before or after a kill
		last  = make([]int, senders)     // per sender, the last message first delivered
		next  = make([]int, senders)
		bad   string
	)
	for i := range last {
		last[i] = -1
	}
	deliver := func(d *codec.Deliver) { // mu held
		if got[d.ID] {
			return
		}
		got[d.ID] = true
		var i, j int
		fmt.Sscanf(string(d.Body), "%d:%d", &i, &j)
		if j <= last[i] && bad == "" {
			bad = fmt.Sprintf("sender %d: message %d first delivered after %d", i, j, last[i])
		}
		last[i] = j
	}
	signIn := func(name string) *client.Conn { return signInAt(ctx, t, addr, name) }
	// receive acknowledges every DELIVER at once, as a client should.
	receive := func(c *client.Conn, wg *sync.WaitGroup) {
		defer wg.Done()
		for f := range c.Events() {
			if d, ok := f.(*codec.Deliver); ok {
				mu.Lock()
				deliver(d)
				mu.Unlock()
				c.Ack(d.Seq, true)
			}
		}
	}

	srv := startChild(t, addr, dir, "CHATD_TEST_ADMIN="+admin)
	before := 0
	var live uint64 // messages acknowledged live, summed over the server's lives
	for cycle, killAfter := range []time.Duration{150 * time.Millisecond, 400 * time.Millisecond} {
		var wg sync.WaitGroup
		rc := signIn("recipient")
		recipient := rc.Welcome.User
		wg.Add(1)
		go receive(rc, &wg)
		for i := 0; i < senders; i++ {
			c := signIn("sender" + strconv.Itoa(i))
			crashSender(c, i, recipient, &mu, next, acked, &wg, func(int) bool {
				time.Sleep(500 * time.Microsecond) // a chat's pace, not a wait for a condition
				return true
			})
		}
		time.Sleep(killAfter) // the scenario: kill at this point in the stream
		poll(10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(acked) > before })
		live += liveAckedAt(t, admin)
		srv.kill9()
		wg.Wait()
		mu.Lock()
		t.Logf("cycle %d: killed after %v, %d messages acknowledged so far, %d delivered", cycle, killAfter, len(acked), len(got))
		if len(acked) <= before {
			t.Fatalf("cycle %d acknowledged nothing new: the kill point tests nothing", cycle)
		}
		before = len(acked)
		mu.Unlock()
		srv = startChild(t, addr, dir, "CHATD_TEST_ADMIN="+admin)
	}
	defer srv.kill9()
	if live == 0 {
		t.Fatal("no message was acknowledged live before the kills: nothing here tested live delivery")
	}

	// The recipient drains what was stored; then every SENT must be in got.
	c := signIn("recipient")
	defer c.Close()
	for quiet := time.After(2 * time.Second); ; {
		select {
		case f := <-c.Events():
			if d, ok := f.(*codec.Deliver); ok {
				mu.Lock()
				deliver(d)
				mu.Unlock()
				c.Ack(d.Seq, true)
				quiet = time.After(2 * time.Second)
			}
			continue
		case <-quiet:
		}
		break
	}
	mu.Lock()
	defer mu.Unlock()
	if bad != "" {
		t.Fatal(bad)
	}
	for id, body := range acked {
		if !got[id] {
			t.Fatalf("acknowledged message %q (%v) was lost", body, id)
		}
	}
	t.Logf("%d acknowledged messages all delivered (%d delivered in all, %d acknowledged live)", len(acked), len(got), live)
}

// liveAckedAt reads chatd_live_acked_total from a server's /stats.
func liveAckedAt(t *testing.T, admin string) uint64 {
	t.Helper()
	code, text := get(t, "http://"+admin+"/stats")
	var st adminpkg.Stats
	if code != 200 || json.Unmarshal([]byte(text), &st) != nil {
		t.Fatalf("/stats: %d %s", code, text)
	}
	return st.LiveAcked
}
