// Copyright 2026 chatd authors. Patch 10 (PATCHES.md).
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

//go:build !windows

package netpoll

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// TestPollerYieldsOnlyWithOneP: the poller yields before blocking only when
// it is the only P; and with one P or two, a request whose handler hands
// the reply to another goroutine (which the poller readied and must not
// leave waiting behind its blocked thread) is answered, round after round.
func TestPollerYieldsOnlyWithOneP(t *testing.T) {
	for _, procs := range []int{1, 2} {
		prev := runtime.GOMAXPROCS(procs)
		if got := yieldBeforeBlock(runtime.GOMAXPROCS(0)); got != (procs == 1) {
			runtime.GOMAXPROCS(prev)
			t.Fatalf("GOMAXPROCS %d: yieldBeforeBlock() = %v", procs, got)
		}
		network, address := "tcp", getTestAddress()
		loop := newTestEventLoop(network, address, func(ctx context.Context, c Connection) error {
			b, err := c.Reader().Next(4)
			if err != nil {
				return err
			}
			reply := append([]byte(nil), b...)
			go func() { // readied by the poller's turn
				c.Writer().WriteBinary(reply)
				c.Writer().Flush()
			}()
			return nil
		})
		conn, err := DialConnection(network, address, time.Second)
		MustNil(t, err)
		conn.SetReadTimeout(5 * time.Second)
		for i := 0; i < 200; i++ {
			_, err = conn.Writer().WriteBinary([]byte("ping"))
			MustNil(t, err)
			MustNil(t, conn.Writer().Flush())
			s, err := conn.Reader().ReadString(4)
			MustNil(t, err)
			Equal(t, s, "ping")
		}
		MustNil(t, conn.Close())
		MustNil(t, loop.Shutdown(context.Background()))
		runtime.GOMAXPROCS(prev)
	}
}
