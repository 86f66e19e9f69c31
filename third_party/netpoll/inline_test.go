// Tests for Config.Inline (PATCHES.md 6): not upstream's.

//go:build !windows

package netpoll

import (
	"bytes"
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

func withInline(f func(ctx context.Context) bool, body func()) {
	old := inlineTask
	inlineTask = f
	defer func() { inlineTask = old }()
	body()
}

func onPollerGoroutine() bool {
	buf := make([]byte, 64<<10)
	return bytes.Contains(buf[:runtime.Stack(buf, false)], []byte("(*defaultPoll).runDeferred"))
}

// TestInlineRunsOnPollerAndMayClose: a read task Inline accepts runs on
// the poller, after the batch; one that closes its connection closes it
// (the close used to wait for the poller to let go of the operator, which
// it could not while running the task), and one that panics closes it and
// leaves the poller running; meanwhile tasks Inline refuses go to Runner.
func TestInlineRunsOnPollerAndMayClose(t *testing.T) {
	var inline atomic.Bool
	inline.Store(true)
	withInline(func(context.Context) bool { return inline.Load() }, func() {
		network, address := "tcp", getTestAddress()
		var onPoller, offPoller atomic.Int32
		loop := newTestEventLoop(network, address,
			func(ctx context.Context, c Connection) error {
				if onPollerGoroutine() {
					onPoller.Add(1)
				} else {
					offPoller.Add(1)
				}
				b, err := c.Reader().Next(c.Reader().Len())
				if err != nil {
					return err
				}
				switch string(b) {
				case "close":
					return c.Close()
				case "panic":
					panic("test: a handler bug")
				}
				_, err = c.Writer().WriteBinary(b)
				if err == nil {
					err = c.Writer().Flush()
				}
				return err
			})
		defer loop.Shutdown(context.Background())

		echo := func(conn Connection, msg string) {
			t.Helper()
			_, err := conn.Writer().WriteBinary([]byte(msg))
			MustNil(t, err)
			MustNil(t, conn.Writer().Flush())
			got, err := conn.Reader().Next(len(msg))
			if err != nil {
				t.Fatalf("echo of %q: %v (turns on the poller %d, off %d)", msg, err, onPoller.Load(), offPoller.Load())
			}
			Equal(t, string(got), msg)
			MustNil(t, conn.Reader().Release())
		}
		closedBy := func(msg string) {
			t.Helper()
			conn, err := DialConnection(network, address, time.Second)
			MustNil(t, err)
			defer conn.Close()
			MustNil(t, conn.SetReadTimeout(5*time.Second))
			echo(conn, "hello")
			_, err = conn.Writer().WriteBinary([]byte(msg))
			MustNil(t, err)
			MustNil(t, conn.Writer().Flush())
			for deadline := time.Now().Add(5 * time.Second); conn.IsActive(); {
				if time.Now().After(deadline) {
					t.Fatalf("%q: the server did not close the connection", msg)
				}
				runtime.Gosched()
			}
		}
		closedBy("close")
		closedBy("panic")

		conn, err := DialConnection(network, address, time.Second)
		MustNil(t, err)
		defer conn.Close()
		echo(conn, "still serving")
		Assert(t, onPoller.Load() >= 5 && offPoller.Load() == 0, "on the poller", onPoller.Load(), "off", offPoller.Load())

		inline.Store(false)
		echo(conn, "to the runner")
		Equal(t, offPoller.Load(), int32(1))
	})
}

// TestSetOnRequestWithInputGoesToRunner: SetOnRequest on a connection that
// already holds input starts the task from the caller's goroutine, which
// must not queue it on the poller (that queue is the poller's alone, and a
// poller idle in epoll_wait would not run it: the connection went deaf).
func TestSetOnRequestWithInputGoesToRunner(t *testing.T) {
	withInline(func(context.Context) bool { return true }, func() {
		network, address := "tcp", getTestAddress()
		loop := newTestEventLoop(network, address,
			func(ctx context.Context, c Connection) error {
				b, err := c.Reader().Next(c.Reader().Len())
				if err != nil {
					return err
				}
				if _, err = c.Writer().WriteBinary(b); err == nil {
					err = c.Writer().Flush()
				}
				return err
			})
		defer loop.Shutdown(context.Background())

		conn, err := DialConnection(network, address, time.Second)
		MustNil(t, err)
		defer conn.Close()
		// Two round trips, the second sent only once the first echo is
		// buffered. The poller runs onRequest (and so reads the callback)
		// only for the read that found the buffer empty, and it reads the
		// second echo after it has returned from the first: once the second
		// echo is buffered, the poller is done with the first, and setting
		// the callback below cannot race with it (it did, once in CI: the
		// poller found the callback the test had just set and ran it, as it
		// may, on itself).
		for i, want := range []int{4, 8} {
			_, err = conn.Writer().WriteBinary([]byte("ping"))
			MustNil(t, err)
			MustNil(t, conn.Writer().Flush())
			for deadline := time.Now().Add(5 * time.Second); conn.Reader().Len() < want; {
				if time.Now().After(deadline) {
					t.Fatalf("echo %d never arrived", i+1)
				}
				runtime.Gosched()
			}
		}

		ran := make(chan bool, 1)
		MustNil(t, conn.SetOnRequest(func(ctx context.Context, c Connection) error {
			_, err := c.Reader().Next(c.Reader().Len())
			select {
			case ran <- onPollerGoroutine():
			default:
			}
			return err
		}))
		select {
		case onPoller := <-ran:
			Assert(t, !onPoller, "the task SetOnRequest started ran on the poller")
		case <-time.After(5 * time.Second):
			t.Fatal("the task SetOnRequest started never ran")
		}
	})
}

// TestInlineTaskAllocatesNothing: queueing a read task on the poller and
// running it allocates nothing (PATCHES.md 12): upstream made a closure
// per readable event.
func TestInlineTaskAllocatesNothing(t *testing.T) {
	withInline(func(context.Context) bool { return true }, func() {
		p := &defaultPoll{}
		c := &connection{}
		c.inputBuffer = NewLinkBuffer()
		c.operator = &FDOperator{poll: p}
		c.ctx = context.Background()
		var ran int
		onRequest := func(ctx context.Context, c Connection) error { ran++; return nil }
		allocs := testing.AllocsPerRun(100, func() {
			if !c.onProcess(nil, onRequest, true) {
				t.Fatal("onProcess found the processing lock held")
			}
			if len(p.deferred) != 1 {
				t.Fatalf("%d tasks queued on the poller, want 1", len(p.deferred))
			}
			p.runDeferred()
		})
		if allocs != 0 {
			t.Fatalf("a read task run on the poller allocates %.1f times, want 0", allocs)
		}
		if c.lock(processing) {
			c.unlock(processing)
		} else {
			t.Fatal("the task left the processing lock held")
		}
		if ran != 0 {
			t.Fatalf("onRequest ran %d times with no input", ran)
		}
	})
}
