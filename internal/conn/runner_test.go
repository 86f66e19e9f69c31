package conn

import (
	"context"
	"testing"
)

// TestRunnerReusesWorkers: tasks that come one after another, as a
// connection's readable events do at a moderate rate, run on workers that
// stay, not on a new goroutine each (whose stack would grow again).
func TestRunnerReusesWorkers(t *testing.T) {
	const n = 200
	before := started.Load()
	done := make(chan struct{})
	for i := 0; i < n; i++ {
		runTask(context.Background(), func() { done <- struct{}{} })
		<-done
	}
	if got := started.Load() - before; got > n/2 {
		t.Fatalf("%d workers started for %d tasks in a row", got, n)
	}
}

// TestRunnerSurvivesPanic: a handler that panics is reported and the
// worker goes on with the next task.
func TestRunnerSurvivesPanic(t *testing.T) {
	done := make(chan struct{})
	runTask(context.Background(), func() { panic("handler bug") })
	runTask(context.Background(), func() { close(done) })
	<-done
}
