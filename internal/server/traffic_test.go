package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/cluster"
)

// traffic is the load the cluster's fault tests run while they break
// something: sender/recipient pairs of reconnecting clients, each sender
// sending its recipient a numbered message every interval, and a ledger
// of what each recipient got. check then asks that every message sent
// was delivered, none twice after the client's dedup, in order.
type traffic struct {
	t       *testing.T
	pairs   []*trafficPair
	stop    chan struct{}
	send    sync.WaitGroup
	readers sync.WaitGroup

	mu     sync.Mutex
	errors map[codec.Code]int // ERRORs the senders saw (they resend)
}

type trafficPair struct {
	sender, recipient *client.Client
	strace, rtrace    *clientTrace // what each went through, for a failure

	mu       sync.Mutex
	ids      []codec.MsgID // every id the sender used, by message number
	got      []int         // message numbers delivered, in order
	seqs     []uint64      // their inbox seqs
	seen     map[codec.MsgID]bool
	receipts map[codec.MsgID]bool // delivered receipts the sender got
}

// connectClient registers name at nd and keeps it connected, retrying
// fast; trace (if not nil) records its connection states.
func connectClient(t *testing.T, ctx context.Context, name string, nd *clusterNode, trace *clientTrace) *client.Client {
	t.Helper()
	opts := client.Options{Addr: nd.addr, Name: name, Password: "password1", Register: true,
		Plaintext: true, Backoff: client.Backoff{Min: 20 * time.Millisecond, Max: 500 * time.Millisecond, Jitter: true}}
	if trace != nil {
		opts.OnStatus = trace.onStatus
	}
	c, err := client.Connect(ctx, opts)
	if err != nil {
		t.Fatalf("%s at %s: %v", name, nd.name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// startTraffic connects n pairs (prefix names them; place picks each
// pair's sender's and recipient's nodes) and starts sending.
func startTraffic(t *testing.T, ctx context.Context, n int, prefix string, every time.Duration,
	place func(i int) (sender, recipient *clusterNode)) *traffic {
	t.Helper()
	tr := &traffic{t: t, stop: make(chan struct{}), errors: map[codec.Code]int{}}
	for i := range n {
		s, r := place(i)
		rname, sname := fmt.Sprintf("%srcpt%02d", prefix, i), fmt.Sprintf("%ssndr%02d", prefix, i)
		p := &trafficPair{rtrace: newClientTrace(rname, r.name), strace: newClientTrace(sname, s.name),
			seen: map[codec.MsgID]bool{}, receipts: map[codec.MsgID]bool{}}
		p.recipient = connectClient(t, ctx, rname, r, p.rtrace)
		p.sender = connectClient(t, ctx, sname, s, p.strace)
		tr.pairs = append(tr.pairs, p)
	}
	for _, p := range tr.pairs {
		tr.readers.Add(2)
		go func() {
			defer tr.readers.Done()
			for f := range p.recipient.Events() {
				p.rtrace.event(f)
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
			defer tr.readers.Done()
			for f := range p.sender.Events() {
				p.strace.event(f)
				switch f := f.(type) {
				case *codec.Error:
					tr.mu.Lock()
					tr.errors[f.Code]++
					tr.mu.Unlock()
				case *codec.Receipt:
					if f.Kind == codec.ReceiptDelivered {
						p.mu.Lock()
						for i := 0; i < f.IDs.Len(); i++ {
							p.receipts[f.IDs.At(i)] = true
						}
						p.mu.Unlock()
					}
				}
			}
		}()
		tr.send.Add(1)
		go func() {
			defer tr.send.Done()
			to := p.recipient.User()
			for n := 0; ; n++ {
				select {
				case <-tr.stop:
					return
				case <-time.After(every):
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
	return tr
}

// check stops the senders, waits (up to wait) until every message has an
// outcome and is delivered (and, with receipts, its delivered receipt is
// back), checks the ledger and returns how many messages were sent.
func (tr *traffic) check(wait time.Duration, receipts bool) int {
	t := tr.t
	t.Helper()
	close(tr.stop)
	tr.send.Wait()
	deadline := time.Now().Add(wait)
	total, lost := 0, 0
	for i, p := range tr.pairs {
		for p.sender.Pending() > 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		p.mu.Lock()
		want := len(p.ids)
		p.mu.Unlock()
		total += want
		done := func() bool {
			p.mu.Lock()
			defer p.mu.Unlock()
			return len(p.got) >= want && (!receipts || len(p.receipts) >= want)
		}
		for !done() && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		p.mu.Lock()
		if len(p.got) < want || receipts && len(p.receipts) < want {
			lost += want - len(p.got)
			t.Errorf("pair %d: %d of %d delivered, %d delivered receipts (sender pending %d); last delivered %s\n%s%s", i, len(p.got), want, len(p.receipts),
				p.sender.Pending(), lastOf(p.got, p.seqs), p.strace.report(p.sender), p.rtrace.report(p.recipient))
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
	for _, p := range tr.pairs {
		p.sender.Close()
		p.recipient.Close()
	}
	tr.readers.Wait()
	tr.mu.Lock()
	t.Logf("%d messages from %d senders, %d lost; errors seen by senders (resent): %v", total, len(tr.pairs), lost, tr.errors)
	tr.mu.Unlock()
	return total
}

// lastOf names the last message delivered and its seq.
func lastOf(got []int, seqs []uint64) string {
	if len(got) == 0 {
		return "none"
	}
	return fmt.Sprintf("m%d (seq %d)", got[len(got)-1], seqs[len(seqs)-1])
}

// loginOn logs name in at nd (retrying while the cluster forms).
func loginOn(t *testing.T, nd *clusterNode, name string) *client.Conn {
	t.Helper()
	c, _, err := authOn(t, nd, func(ctx context.Context, c *client.Conn) (codec.Welcome, error) {
		return c.Login(ctx, name, "password1")
	})
	if err != nil {
		t.Fatalf("%s at %s: %v", name, nd.name, err)
	}
	return c
}

// statusOf reads nd's /cluster (zero if it does not answer).
func statusOf(nd *clusterNode) cluster.Status {
	var st cluster.Status
	if resp, err := http.Get("http://" + nd.admin + "/cluster"); err == nil {
		json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
	}
	return st
}
