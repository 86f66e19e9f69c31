package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
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
	n.hops.observe(time.Since(start))
	return m.Data, nil
}

// hopHistogram counts request round trips in exponential buckets, for
// the hop-latency metric: bucket i holds trips up to hopBounds[i].
type hopHistogram struct {
	counts [len(hopBounds) + 1]atomic.Uint64
	sumNs  atomic.Uint64
}

var hopBounds = [...]time.Duration{
	100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond,
	25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second, 5 * time.Second,
}

func (h *hopHistogram) observe(d time.Duration) {
	i := 0
	for i < len(hopBounds) && d > hopBounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumNs.Add(uint64(d))
}

// HopHistogram is a snapshot of request round trips: Counts[i] trips took
// at most Bounds[i] (the last count is the rest), cumulative as
// Prometheus wants them.
type HopHistogram struct {
	Bounds     []time.Duration
	Cumulative []uint64
	Count      uint64
	Sum        time.Duration
}

// Hops returns the round-trip histogram of this node's requests.
func (n *Node) Hops() HopHistogram {
	out := HopHistogram{Bounds: hopBounds[:], Cumulative: make([]uint64, len(hopBounds))}
	var total uint64
	for i := range n.hops.counts {
		total += n.hops.counts[i].Load()
		if i < len(hopBounds) {
			out.Cumulative[i] = total
		}
	}
	out.Count, out.Sum = total, time.Duration(n.hops.sumNs.Load())
	return out
}
