package server

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
)

// restart runs nd again on its data folder and waits until it is ready.
func (nd *clusterNode) restart(t *testing.T, routes string) {
	t.Helper()
	ready := make(chan error, 1)
	nd.start(t, routes, ready)
	select {
	case err := <-ready:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatalf("%s did not come back within a minute", nd.name)
	}
}

// clusterCycles is how many kill -9 cycles the cluster crash test runs:
// 10 in the default suite, CHATD_CLUSTER_CYCLES (say 100) for a long run.
func clusterCycles() int {
	if n, err := strconv.Atoi(os.Getenv("CHATD_CLUSTER_CYCLES")); err == nil && n > 0 {
		return n
	}
	return 10
}

// TestClusterKillNineLosesNothing runs 20 senders and their 20
// recipients on random nodes of a three-node cluster, each pair sending
// across homes, and kill -9s a random node mid-load, cycle after cycle,
// restarting it on its folder. Every message that got SENT must be
// delivered to its recipient, none twice after the client's dedup, in
// the order its sender sent it; users homed on the dead node get their
// backlog when it returns.
func TestClusterKillNineLosesNothing(t *testing.T) {
	t.Parallel() // most of its time is waiting on other processes; -parallel bounds how many run at once
	nodes := startClusterNodes(t, 3)
	var routes []string
	for _, nd := range nodes {
		routes = append(routes, nd.listen)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const pairs = 20
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	fast := client.Backoff{Min: 50 * time.Millisecond, Max: 500 * time.Millisecond, Jitter: true}
	connect := func(name string, nd *clusterNode) *client.Client {
		c, err := client.Connect(ctx, client.Options{Addr: nd.addr, Name: name, Password: "password1",
			Register: true, Plaintext: true, Backoff: fast})
		if err != nil {
			t.Fatalf("%s at %s: %v", name, nd.name, err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	type pair struct {
		sender, recipient *client.Client
		mu                sync.Mutex
		sent              map[codec.MsgID]int // SENT ids -> message number
		got               []int               // message numbers delivered, in order
		seqs              []uint64            // their inbox seqs
		seen              map[codec.MsgID]bool
	}
	ps := make([]*pair, pairs)
	for i := range ps {
		p := &pair{sent: map[codec.MsgID]int{}, seen: map[codec.MsgID]bool{}}
		p.recipient = connect(fmt.Sprintf("rcpt%02d", i), nodes[rng.IntN(3)])
		p.sender = connect(fmt.Sprintf("sndr%02d", i), nodes[rng.IntN(3)])
		ps[i] = p
	}
	var errMu sync.Mutex
	errCodes := map[codec.Code]int{}
	// Readers: SENT for senders, deliveries for recipients.
	var readers sync.WaitGroup
	for _, p := range ps {
		readers.Add(2)
		go func() {
			defer readers.Done()
			for f := range p.recipient.Events() {
				if d, ok := f.(*codec.Deliver); ok {
					var num int
					fmt.Sscanf(string(d.Body), "m%d", &num)
					p.mu.Lock()
					if p.seen[d.ID] {
						t.Errorf("message %d delivered twice after dedup", num)
					}
					p.seen[d.ID] = true
					p.got = append(p.got, num)
					p.seqs = append(p.seqs, d.Seq)
					p.mu.Unlock()
				}
			}
		}()
		go func() {
			defer readers.Done()
			for f := range p.sender.Events() {
				if e, ok := f.(*codec.Error); ok {
					errMu.Lock()
					errCodes[e.Code]++
					errMu.Unlock()
				}
			}
		}()
	}
	ids := make([][]codec.MsgID, pairs) // every id each sender used, by number
	var sendWG sync.WaitGroup
	stop := make(chan struct{})
	for i, p := range ps {
		sendWG.Add(1)
		go func() { // about 50 msgs/s per sender, until stop
			defer sendWG.Done()
			to := p.recipient.User()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				id, err := p.sender.Send(to, []byte(fmt.Sprintf("m%d", n)))
				if err != nil {
					return
				}
				p.mu.Lock()
				ids[i] = append(ids[i], id)
				p.mu.Unlock()
			}
		}()
	}
	for cycle := range clusterCycles() {
		time.Sleep(time.Duration(200+rng.IntN(600)) * time.Millisecond) // load before the kill
		victim := nodes[rng.IntN(3)]
		victim.kill()
		time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		victim.restart(t, strings.Join(routes, ","))
		t.Logf("cycle %d: killed and restarted %s", cycle, victim.name)
	}
	close(stop)
	sendWG.Wait()

	// Let every sent message settle: SENT or refused for good.
	deadline := time.Now().Add(3 * time.Minute)
	for _, p := range ps {
		for p.sender.Pending() > 0 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
	}
	// Which ids got SENT: the client's outbox is empty once each has an
	// outcome; ids refused for good arrive as ERROR. Collect from the
	// numbering: a message is acknowledged unless refused.
	total, lost := 0, 0
	for i, p := range ps {
		if n := p.sender.Pending(); n > 0 {
			t.Fatalf("sender %d still has %d messages without an outcome", i, n)
		}
		p.mu.Lock()
		want := len(ids[i])
		p.mu.Unlock()
		total += want
		// Every message got SENT (nothing is refused for good here), so
		// every one must arrive.
		for time.Now().Before(deadline) {
			p.mu.Lock()
			n := len(p.got)
			p.mu.Unlock()
			if n >= want {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		p.mu.Lock()
		if len(p.got) < want {
			lost += want - len(p.got)
			t.Errorf("pair %d: %d of %d messages delivered", i, len(p.got), want)
		}
		for j := 1; j < len(p.got); j++ {
			if p.got[j] <= p.got[j-1] {
				lo, hi := max(0, j-3), min(len(p.got), j+3)
				t.Errorf("pair %d: message %d delivered after %d: out of order (numbers %v, seqs %v)", i, p.got[j], p.got[j-1], p.got[lo:hi], p.seqs[lo:hi])
				break
			}
		}
		p.mu.Unlock()
	}
	for _, p := range ps {
		p.sender.Close()
		p.recipient.Close()
	}
	readers.Wait()
	t.Logf("%d cycles, %d messages from %d senders, %d lost; errors seen by senders (resent): %v", clusterCycles(), total, pairs, lost, errCodes)
}
