package bench

import (
	"fmt"
	"os"
	"sync/atomic"
	"time"
)

// Shared by the scenarios that send load (route, group).

// startPacer hands out send credits at rate per second, following the
// clock rather than ticks (a ticker fires late under load, which would
// quietly lower the rate). It returns nil for rate 0: flat out. A credit
// not taken because every sender is at its window is lost, as a real
// client's message would wait in its own queue.
func startPacer(rate int, stopping *atomic.Bool) <-chan struct{} {
	if rate <= 0 {
		return nil
	}
	credit := make(chan struct{}, rate)
	go func() {
		tk := time.NewTicker(time.Millisecond)
		defer tk.Stop()
		begin, issued := time.Now(), 0
		for range tk.C {
			if stopping.Load() {
				return
			}
			for due := int(time.Since(begin).Seconds() * float64(rate)); issued < due; issued++ {
				select {
				case credit <- struct{}{}:
				default:
				}
			}
		}
	}()
	return credit
}

// acquire waits for a slot in the sender's window and, at a fixed rate,
// for a credit. It gives up after 100 ms (false) so that the caller can
// notice the end of the run.
func acquire(window chan struct{}, credit <-chan struct{}) bool {
	select {
	case window <- struct{}{}:
	case <-time.After(100 * time.Millisecond):
		return false
	}
	if credit == nil {
		return true
	}
	select {
	case <-credit:
		return true
	case <-time.After(100 * time.Millisecond):
		<-window
		return false
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
