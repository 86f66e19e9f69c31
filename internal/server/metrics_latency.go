package server

import (
	"time"

	"github.com/chatd/chatd/internal/latency"
)

// latencies are the server's latency histograms, fed from the message
// path (hist.Observe: atomics only) and read by the collector.
type latencies struct {
	sync     *latency.Hist // an inbox batch's commit to durable (fsync), per batch
	sendSent *latency.Hist // a SEND's arrival to its SENT queued, per message
	push     *latency.Hist // an entry's store to its DELIVER queued live, per entry
	drain    *latency.Hist // the same for entries a drain sent (the recipient was behind or offline)
	login    [numLoginKinds]*latency.Hist
}

func newLatencies() latencies {
	l := latencies{sync: newHist(diskBounds), sendSent: newHist(diskBounds),
		push: newHist(deliveryBounds), drain: newHist(deliveryBounds)}
	for k := range l.login {
		l.login[k] = newHist(loginBounds)
	}
	return l
}

// delivered is the router's Delivered hook.
func (l *latencies) delivered(drained bool, waited time.Duration) {
	if drained {
		l.drain.Observe(waited)
	} else {
		l.push.Observe(waited)
	}
}
