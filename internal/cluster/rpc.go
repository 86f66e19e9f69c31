package cluster

import (
	"context"
	"errors"
	"fmt"
	"github.com/chatd/chatd/internal/latency"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Requests between nodes. Core NATS is at-most-once (a burst between two
// nodes here lost 23-32% to a slow consumer), so every hop chatd makes is
// a request that the other node answers when it has done the work; no
// answer within the timeout means the outcome is unknown and the caller
// says so to its client, which retries (homes deduplicate). Requests in
// flight from this node are bounded: past MaxInFlight a request fails at
// once with ErrBusy rather than queue without limit.
//
//	subject  "chatd.node.<node>.<op>"

// ErrBusy is Request's answer when MaxInFlight requests are already out.
var ErrBusy = errors.New("cluster: too many requests in flight to other nodes")

// ErrNoAnswer wraps a request that got no answer in time: the other node
// may or may not have done the work.
var ErrNoAnswer = errors.New("cluster: no answer from node")

// MaxInFlight bounds the requests this node has out at once.
const MaxInFlight = 8192

func opSubject(node, op string) string { return "chatd.node." + node + "." + op }

// Handle serves requests of kind op sent to this node. fn runs on the
// subscription's goroutine, one request at a time in arrival order, and
// must not block: it answers by calling respond, at once or later from any
// goroutine (after a commit, say), exactly once.
func (n *Node) Handle(op string, fn func(req []byte, respond func([]byte))) error {
	if !validToken(op) {
		return fmt.Errorf("cluster: op name %q", op)
	}
	sub, err := n.nc.Subscribe(opSubject(n.cfg.Node, op), func(m *nats.Msg) {
		n.counters.requestsIn.Add(1)
		fn(m.Data, func(reply []byte) {
			if err := m.Respond(reply); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
				n.counters.asyncErrors.Add(1)
			}
		})
	})
	if err != nil {
		return fmt.Errorf("cluster: handle %s: %w", op, err)
	}
	// A slow handler must not cost dropped requests while it catches up:
	// 64K queued requests or 64 MiB before NATS calls it a slow consumer.
	sub.SetPendingLimits(65536, 64<<20)
	if err := n.nc.Flush(); err != nil { // the local server has the interest; routes tell the others soon after
		return fmt.Errorf("cluster: handle %s: %w", op, err)
	}
	n.mu.Lock()
	n.subs = append(n.subs, sub)
	n.mu.Unlock()
	return nil
}

// OpTimeout is how long a request waits for its answer: a handler that
// gets to a request later than this after it arrived may drop it, as its
// sender has stopped waiting (and sends it again if it is to be done).
func (n *Node) OpTimeout() time.Duration { return n.cfg.OpTimeout }

// Request sends req to node's op handler and returns its answer. It
// waits at most OpTimeout (or until ctx ends); then the error wraps
// ErrNoAnswer.
func (n *Node) Request(ctx context.Context, node, op string, req []byte) ([]byte, error) {
	if n.inflight.Add(1) > MaxInFlight {
		n.inflight.Add(-1)
		n.counters.requestsBusy.Add(1)
		return nil, ErrBusy
	}
	defer n.inflight.Add(-1)
	ctx, cancel := context.WithTimeout(ctx, n.cfg.OpTimeout)
	defer cancel()
	start := time.Now()
	m, err := n.nc.RequestWithContext(ctx, opSubject(node, op), req)
	if err != nil {
		n.counters.requestsFailed.Add(1)
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) {
			return nil, fmt.Errorf("%w %s (%s): %w", ErrNoAnswer, node, op, err)
		}
		return nil, fmt.Errorf("cluster: request %s to %s: %w", op, node, err)
	}
	n.hops.Observe(time.Since(start))
	return m.Data, nil
}

// hopBounds are the request round-trip buckets (the hop-latency metric).
var hopBounds = []time.Duration{
	100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond,
	25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second, 5 * time.Second,
}

// HopHistogram is a snapshot of request round trips: Cumulative[i]
// requests took at most Bounds[i], as Prometheus wants them.
type HopHistogram latency.Snapshot

// Quantile returns the least bound within which fraction q of the
// requests between h and the later h2 took (0 if none; the last bound
// if beyond).
func (h HopHistogram) Quantile(h2 HopHistogram, q float64) time.Duration {
	n := h2.Count - h.Count
	if n == 0 || len(h2.Cumulative) != len(h2.Bounds) {
		return 0
	}
	for i, b := range h2.Bounds {
		var before uint64
		if i < len(h.Cumulative) {
			before = h.Cumulative[i]
		}
		if float64(h2.Cumulative[i]-before) >= q*float64(n) {
			return b
		}
	}
	return h2.Bounds[len(h2.Bounds)-1]
}

// Hops returns the round-trip histogram of this node's requests.
func (n *Node) Hops() HopHistogram { return HopHistogram(n.hops.Snapshot()) }

// Send is Request without waiting: it publishes req at once, so that
// requests sent one after another from one goroutine reach the other
// node in that order, and calls done from another goroutine with the
// answer, or with an error wrapping ErrNoAnswer after OpTimeout. It fails
// at once (done is not called) with ErrBusy past MaxInFlight.
func (n *Node) Send(node, op string, req []byte, done func(reply []byte, err error)) error {
	if n.inflight.Add(1) > MaxInFlight {
		n.inflight.Add(-1)
		n.counters.requestsBusy.Add(1)
		return ErrBusy
	}
	p := &pendingReq{done: done, start: time.Now(), node: node, op: op}
	id := n.async.add(p)
	err := n.nc.PublishMsg(&nats.Msg{Subject: opSubject(node, op), Reply: n.async.prefix + strconv.FormatUint(id, 36), Data: req})
	if err != nil {
		if n.async.take(id) != nil {
			n.inflight.Add(-1)
		}
		n.counters.requestsFailed.Add(1)
		return fmt.Errorf("cluster: send %s to %s: %w", op, node, err)
	}
	return nil
}

// asyncReqs are Send's requests waiting for answers, by id.
type asyncReqs struct {
	prefix string // this node's reply subject prefix

	mu      sync.Mutex
	next    uint64
	pending map[uint64]*pendingReq
}

type pendingReq struct {
	done     func([]byte, error)
	start    time.Time
	node, op string
}

func (a *asyncReqs) add(p *pendingReq) uint64 {
	a.mu.Lock()
	a.next++
	id := a.next
	a.pending[id] = p
	a.mu.Unlock()
	return id
}

func (a *asyncReqs) take(id uint64) *pendingReq {
	a.mu.Lock()
	p := a.pending[id]
	delete(a.pending, id)
	a.mu.Unlock()
	return p
}

// startAsync subscribes to the answers of Send's requests and starts the
// loop that times them out.
func (n *Node) startAsync() error {
	n.async = asyncReqs{prefix: nats.NewInbox() + ".", pending: map[uint64]*pendingReq{}}
	sub, err := n.nc.Subscribe(n.async.prefix+"*", func(m *nats.Msg) {
		id, err := strconv.ParseUint(m.Subject[len(n.async.prefix):], 36, 64)
		if err != nil {
			return
		}
		if p := n.async.take(id); p != nil {
			n.inflight.Add(-1)
			if len(m.Data) == 0 && m.Header.Get("Status") == "503" { // no responders: the node is not there
				n.counters.requestsFailed.Add(1)
				p.done(nil, fmt.Errorf("%w %s (%s): %w", ErrNoAnswer, p.node, p.op, nats.ErrNoResponders))
				return
			}
			n.hops.Observe(time.Since(p.start))
			p.done(m.Data, nil)
		}
	})
	if err != nil {
		return fmt.Errorf("cluster: subscribe answers: %w", err)
	}
	sub.SetPendingLimits(-1, 256<<20)
	n.mu.Lock()
	n.subs = append(n.subs, sub)
	n.mu.Unlock()
	n.wg.Add(1)
	go n.expireAsync()
	return nil
}

// expireAsync fails Send's requests older than OpTimeout, ten times per
// timeout, and every one left at Close.
func (n *Node) expireAsync() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.OpTimeout / 10)
	defer t.Stop()
	for {
		var stopping bool
		select {
		case <-n.stop:
			stopping = true
		case <-t.C:
		}
		now := time.Now()
		var late []*pendingReq
		n.async.mu.Lock()
		for id, p := range n.async.pending {
			if stopping || now.Sub(p.start) >= n.cfg.OpTimeout {
				late = append(late, p)
				delete(n.async.pending, id)
			}
		}
		n.async.mu.Unlock()
		for _, p := range late {
			n.inflight.Add(-1)
			n.counters.requestsFailed.Add(1)
			p.done(nil, fmt.Errorf("%w %s (%s) within %s", ErrNoAnswer, p.node, p.op, n.cfg.OpTimeout))
		}
		if stopping {
			return
		}
	}
}

// Publish sends data to node's op handler with no answer and no
// guarantee (core NATS drops under overload): for what a later request
// repairs, like a push whose loss the receiver notices as a gap.
func (n *Node) Publish(node, op string, data []byte) error {
	return n.nc.Publish(opSubject(node, op), data)
}
