package server

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/cluster"
)

// clientTrace is what a traffic client went through, kept to say why a
// pair got stuck: its connection states (OnStatus), the last SENT and
// DELIVER it handed on, and the ERRORs, KICKEDs and GOAWAYs it saw.
type clientTrace struct {
	name, node string
	start      time.Time

	mu        sync.Mutex
	state     client.Status
	stateAt   time.Time
	attempts  int       // connection attempts
	failed    int       // attempts that failed or connections that ended
	recent    []string  // the last few state changes, oldest first
	sent      int       // SENTs handed on
	sentAt    time.Time // the last one
	delivered int       // DELIVERs handed on
	seq       uint64    // the last one's inbox seq
	deliverAt time.Time // and when
	errors    []string  // the last few ERRORs
	kicked    []string  // every KICKED and GOAWAY
}

const traceRecent = 12

func newClientTrace(name, node string) *clientTrace {
	return &clientTrace{name: name, node: node, start: time.Now()}
}

// since is a time as seconds into the test (or "never").
func (ct *clientTrace) since(at time.Time) string {
	if at.IsZero() {
		return "never"
	}
	return fmt.Sprintf("%.2fs", at.Sub(ct.start).Seconds())
}

// onStatus is the client's OnStatus: it must not block.
func (ct *clientTrace) onStatus(s client.Status) {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	now := time.Now()
	ct.state, ct.stateAt = s, now
	line := fmt.Sprintf("%s %v", ct.since(now), s.State)
	switch s.State {
	case client.StateConnecting:
		ct.attempts++
		line += fmt.Sprintf(" attempt %d", s.Attempt)
	case client.StateWaiting:
		ct.failed++
		line += fmt.Sprintf(" %v (wait %v, busy %v)", s.Err, s.Wait, s.Busy)
	}
	ct.recent = append(ct.recent, line)
	if len(ct.recent) > traceRecent {
		ct.recent = ct.recent[1:]
	}
}

// event records a frame the client handed on.
func (ct *clientTrace) event(f codec.Frame) {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	now := time.Now()
	switch f := f.(type) {
	case *codec.Sent:
		ct.sent++
		ct.sentAt = now
	case *codec.Deliver:
		ct.delivered++
		ct.seq, ct.deliverAt = f.Seq, now
	case *codec.Error:
		ct.errors = append(ct.errors, fmt.Sprintf("%s %v id=%x %q", ct.since(now), f.Code, f.ID, f.Detail))
		if len(ct.errors) > traceRecent {
			ct.errors = ct.errors[1:]
		}
	case *codec.Kicked:
		ct.kicked = append(ct.kicked, fmt.Sprintf("%s KICKED %v", ct.since(now), f.Reason))
	case *codec.Goaway:
		ct.kicked = append(ct.kicked, fmt.Sprintf("%s GOAWAY %v", ct.since(now), f.Reason))
	}
}

// report says where the client stands, for a failure message.
func (ct *clientTrace) report(c *client.Client) string {
	user, pending := c.User(), c.Pending()
	ct.mu.Lock()
	defer ct.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "  %s (user %d, shard %d) at node %s: now %s, state %v since %s; %d attempts, %d failed or ended\n",
		ct.name, user, cluster.ShardOf(user), ct.node, ct.since(time.Now()), ct.state.State, ct.since(ct.stateAt), ct.attempts, ct.failed)
	fmt.Fprintf(&b, "    %d SENT (last at %s), %d pending; %d DELIVER (last seq %d at %s)\n",
		ct.sent, ct.since(ct.sentAt), pending, ct.delivered, ct.seq, ct.since(ct.deliverAt))
	for _, l := range ct.recent {
		fmt.Fprintf(&b, "    state: %s\n", l)
	}
	for _, l := range ct.errors {
		fmt.Fprintf(&b, "    error: %s\n", l)
	}
	for _, l := range ct.kicked {
		fmt.Fprintf(&b, "    %s\n", l)
	}
	return b.String()
}
