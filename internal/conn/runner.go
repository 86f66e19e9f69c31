package conn

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"sync/atomic"
	"time"
)

// Handlers (netpoll's OnRequest) run on goroutines that outlive one task:
// a worker that finished waits up to workerLinger for the next one before
// it exits, keeping the stack it grew. gopool, netpoll's default runner,
// ends a worker as soon as its queue is empty, so at a moderate rate
// nearly every readable event started a goroutine whose 8 KiB stack then
// grew again through the handler (decode, routing, a push, a write):
// newproc and copystack were 6% of the server's CPU at 5,000 msgs/s (with
// commits run on the handler, since reverted; less without them).
//
// A task goes to an idle worker if one waits (an unbuffered send), else to
// a new goroutine: a handler that waits for the rest of a frame holds only
// its own goroutine, never the others', as with gopool.
//
// Rejected: a fixed set of workers (a slowloris client holding a worker per
// half frame would stall every other connection); running every handler on
// the poller goroutine (the same, for all of them at once). Only turns that
// cannot wait run there (inline.go, netpoll's Config.Inline).
const workerLinger = 100 * time.Millisecond

var (
	tasks   = make(chan func()) // unbuffered: only an idle worker receives
	started atomic.Int64        // workers started, for tests
)

// runTask is netpoll's Runner.
func runTask(_ context.Context, f func()) {
	select {
	case tasks <- f:
	default:
		go work(f)
	}
}

// Go runs f on a worker, as netpoll runs a handler: for work a handler
// hands off because it blocks (a synced write, a round trip to another
// node). A plain goroutine would start with a small stack and grow it
// through Pebble's read path on every call: at a login storm, stack
// growth was 12% of the server's CPU per RESUME.
func Go(f func()) { runTask(context.Background(), f) }

// work runs f, then whatever tasks come while it lingers.
func work(f func()) {
	started.Add(1)
	t := time.NewTimer(workerLinger)
	defer t.Stop()
	for {
		safely(f)
		t.Reset(workerLinger)
		select {
		case f = <-tasks:
		case <-t.C:
			return
		}
	}
}

// safely runs a handler; a panic is reported and the worker goes on, as
// gopool does. netpoll's task has closed the connection by then.
func safely(f func()) {
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(os.Stderr, "conn: handler panic: %v\n%s", r, debug.Stack())
		}
	}()
	f()
}
