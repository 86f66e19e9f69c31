package bench

import (
	"fmt"
	"os"
	"time"
)

// Shared by the scenarios that send load (route, group).
//
// The load generator shares the machine's cores with the server, so what
// it spends per message is taken from the server, and the shape of its
// sending decides the queueing the server sees. So every sender keeps its
// own schedule (no shared credit channel handing out bursts) and nothing
// on the per-message path allocates: a sender sleeps on its goroutine's
// own timer and waits for window room on a channel it owns.

// schedule paces one of n senders at rate msgs/s over all of them: its
// k-th message is due at offset + k*interval after the start, where
// interval = n/rate and offset = i/n*interval spreads the senders evenly
// over one interval (as mqttload does). Rate 0 is flat out: every
// message is due at once.
type schedule struct {
	offset, interval float64 // ns since the epoch
	k                int64
}

func newSchedule(start time.Duration, i, n, rate int) schedule {
	if rate <= 0 {
		return schedule{}
	}
	interval := float64(n) / float64(rate) * 1e9
	return schedule{offset: float64(start) + float64(i)/float64(n)*interval, interval: interval}
}

// due returns the due time of the next message (since the epoch); 0 when
// flat out.
func (s *schedule) due() time.Duration {
	if s.interval == 0 {
		return 0
	}
	return time.Duration(s.offset + float64(s.k)*s.interval)
}

// advance moves on to the next message.
func (s *schedule) advance() { s.k++ }

// sleepUntil sleeps until at (since epoch) or until done is closed,
// in slices of at most 100 ms so that a slow schedule still notices the
// end of the run. time.Sleep uses the goroutine's own timer: no
// allocation. It reports false when done is closed.
func sleepUntil(epoch time.Time, at time.Duration, done <-chan struct{}) bool {
	for {
		select {
		case <-done:
			return false
		default:
		}
		d := at - time.Since(epoch)
		if d <= 0 {
			return true
		}
		time.Sleep(min(d, 100*time.Millisecond))
	}
}

// takeSlot takes a slot in window, calling flush first if it has to wait
// (queued frames must go out before the sender blocks, or the slots they
// would free never come back). It reports false when done is closed.
func takeSlot(window chan struct{}, done <-chan struct{}, flush func()) bool {
	select {
	case window <- struct{}{}:
		return true
	default:
	}
	flush()
	select {
	case window <- struct{}{}:
		return true
	case <-done:
		return false
	}
}

// freeSlot frees a slot of window; it never blocks (a frame that frees
// nothing, such as a duplicate, is ignored).
func freeSlot(window chan struct{}) {
	select {
	case <-window:
	default:
	}
}

// measure runs the measured phase of duration d, showing progress and
// the running rate of count, and returns the seconds it lasted.
func measure(name string, d time.Duration, count func() int64, unit string) float64 {
	start := time.Now()
	bar := newBar(name, int(d/time.Second))
	for el := time.Duration(0); el < d; el = time.Since(start) {
		time.Sleep(min(time.Second, d-el))
		bar.set(int(time.Since(start) / time.Second))
		fmt.Fprintf(os.Stderr, " %9.0f %s", float64(count())/time.Since(start).Seconds(), unit)
	}
	secs := time.Since(start).Seconds()
	bar.done()
	return secs
}
