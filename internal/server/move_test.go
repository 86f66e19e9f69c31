package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/cluster"
)

// Shards move under load: ten senders each send to their recipient on
// random nodes while the home shard of every sender and every recipient
// moves to another node, one after the other. Every SENT message is
// delivered, none twice after the client's dedup, each sender's in order,
// and every delivered receipt reaches its sender at its new home.
func TestClusterShardMoveUnderLoad(t *testing.T) {
	t.Parallel() // most of its time is waiting on other processes; -parallel bounds how many run at once
	nodes := startClusterNodes(t, 3)
	const pairs = 10
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	connect := func(name string, nd *clusterNode) *client.Client {
		c, err := client.Connect(ctx, client.Options{Addr: nd.addr, Name: name, Password: "password1", Register: true,
			Plaintext: true, Backoff: client.Backoff{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond, Jitter: true}})
		if err != nil {
			t.Fatalf("%s at %s: %v", name, nd.name, err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	type pair struct {
		sender, recipient *client.Client
		mu                sync.Mutex
		ids               []codec.MsgID
		got               []int
		seen              map[codec.MsgID]bool
		receipts          map[codec.MsgID]bool
	}
	ps := make([]*pair, pairs)
	for i := range ps {
		ps[i] = &pair{sender: connect(fmt.Sprintf("msndr%d", i), nodes[i%3]), recipient: connect(fmt.Sprintf("mrcpt%d", i), nodes[(i+1)%3]),
			seen: map[codec.MsgID]bool{}, receipts: map[codec.MsgID]bool{}}
	}
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
					p.mu.Unlock()
				}
			}
		}()
		go func() {
			defer readers.Done()
			for f := range p.sender.Events() {
				if r, ok := f.(*codec.Receipt); ok && r.Kind == codec.ReceiptDelivered {
					p.mu.Lock()
					for i := 0; i < r.IDs.Len(); i++ {
						p.receipts[r.IDs.At(i)] = true
					}
					p.mu.Unlock()
				}
			}
		}()
	}
	stop := make(chan struct{})
	var sendWG sync.WaitGroup
	for _, p := range ps {
		sendWG.Add(1)
		go func() {
			defer sendWG.Done()
			to := p.recipient.User()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				case <-time.After(10 * time.Millisecond):
				}
				id, err := p.sender.Send(to, []byte(fmt.Sprintf("m%d", n)))
				if err != nil {
					return
				}
				p.mu.Lock()
				p.ids = append(p.ids, id)
				p.mu.Unlock()
			}
		}()
	}
	// Move every user's shard to the next node, under load.
	names := make([]string, len(nodes))
	for i, nd := range nodes {
		names[i] = nd.name
	}
	for _, p := range ps {
		for _, u := range []uint64{p.sender.User(), p.recipient.User()} {
			time.Sleep(50 * time.Millisecond) // load between moves
			shard := cluster.ShardOf(u)
			from := homeNode(nodes, u)
			// A shard moved before (sender and recipient may share one) is
			// found by asking each node until its owner answers.
			moved := false
			var why []string
			for _, i := range []int{from, (from + 1) % 3, (from + 2) % 3} {
				resp, err := (&http.Client{Timeout: time.Minute}).PostForm("http://"+nodes[i].admin+"/cluster/move",
					url.Values{"shard": {strconv.Itoa(shard)}, "to": {names[(i+1)%3]}})
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					t.Logf("moved shard %d: %s", shard, body)
					moved = true
					break
				}
				why = append(why, nodes[i].name+": "+string(body))
			}
			if !moved {
				t.Fatalf("shard %d: no node would move it: %q", shard, why)
			}
		}
	}
	time.Sleep(300 * time.Millisecond) // load after the last move
	close(stop)
	sendWG.Wait()

	deadline := time.Now().Add(2 * time.Minute)
	total := 0
	for i, p := range ps {
		for p.sender.Pending() > 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		p.mu.Lock()
		want := len(p.ids)
		p.mu.Unlock()
		total += want
		for time.Now().Before(deadline) {
			p.mu.Lock()
			done := len(p.got) >= want && len(p.receipts) >= want
			p.mu.Unlock()
			if done {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		p.mu.Lock()
		if len(p.got) < want || len(p.receipts) < want {
			t.Errorf("pair %d: %d of %d delivered, %d delivered receipts (sender pending %d)", i, len(p.got), want, len(p.receipts), p.sender.Pending())
		}
		for j := 1; j < len(p.got); j++ {
			if p.got[j] <= p.got[j-1] {
				t.Errorf("pair %d: message %d after %d: out of order", i, p.got[j], p.got[j-1])
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
	t.Logf("%d messages from %d senders across %d shard moves", total, pairs, 2*pairs)
}
