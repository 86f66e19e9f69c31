// Copyright 2026 chatd authors. Patch 11 (PATCHES.md).
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
//     http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

//go:build linux

package netpoll

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// TestPollerHoldsPOnlyWithPsToSpare: the poller waits holding its P only
// while GOMAXPROCS exceeds the pollers; and during such waits the runtime
// still stops the world (each runtime.GC below does, twice) and other
// goroutines still run: a request answered from another goroutine, then a
// collection, round after round, and an answer after the poller has been
// idle longer than the hold (it blocked the usual way meanwhile).
func TestPollerHoldsPOnlyWithPsToSpare(t *testing.T) {
	for _, procs := range []int{1, 2} {
		prev := runtime.GOMAXPROCS(procs)
		if got, want := holdBeforeBlock(runtime.GOMAXPROCS(0)), procs > 1; got != want {
			runtime.GOMAXPROCS(prev)
			t.Fatalf("GOMAXPROCS %d, %d poller: holdBeforeBlock() = %v", procs, pollmanager.numLoops, got)
		}
		network, address := "tcp", getTestAddress()
		loop := newTestEventLoop(network, address, func(ctx context.Context, c Connection) error {
			b, err := c.Reader().Next(4)
			if err != nil {
				return err
			}
			reply := append([]byte(nil), b...)
			go func() { // readied by the poller's turn, run on another P or after the wait
				c.Writer().WriteBinary(reply)
				c.Writer().Flush()
			}()
			return nil
		})
		conn, err := DialConnection(network, address, time.Second)
		MustNil(t, err)
		conn.SetReadTimeout(5 * time.Second)
		roundTrip := func() {
			_, err := conn.Writer().WriteBinary([]byte("ping"))
			MustNil(t, err)
			MustNil(t, conn.Writer().Flush())
			s, err := conn.Reader().ReadString(4)
			MustNil(t, err)
			Equal(t, s, "ping")
		}
		for i := 0; i < 50; i++ {
			roundTrip()
			done := make(chan struct{})
			go func() { runtime.GC(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				runtime.GOMAXPROCS(prev)
				t.Fatalf("GOMAXPROCS %d: a collection did not finish while the poller waited", procs)
			}
		}
		// Idle past the hold: the poller must have blocked the usual way
		// and still wake for the next request.
		idle := time.NewTimer(3 * holdMsec * time.Millisecond)
		<-idle.C
		roundTrip()
		MustNil(t, conn.Close())
		MustNil(t, loop.Shutdown(context.Background()))
		runtime.GOMAXPROCS(prev)
	}
}
