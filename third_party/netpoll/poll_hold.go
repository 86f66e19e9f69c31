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

import "sync/atomic"

// holdMsec is how long a poller that has just handled events and found
// no more waits for the next ones holding its P, before it blocks the
// usual way. Half sysmon's time slice (forcePreemptNS, 10 ms): the wait
// delays nothing the scheduler would not have delayed for a goroutine
// that ran as long, and an idle poller's last hold ends before the
// preemption signal would cut it short.
const holdMsec = 5

// holdBeforeBlock reports whether a poller that found no events after a
// busy turn should wait up to holdMsec in a raw epoll_wait, keeping its P,
// before the blocking wait that releases it; procs is
// runtime.GOMAXPROCS(0).
//
// A poller blocked in epoll_wait through syscall.Syscall leaves its P in
// the syscall state. Under a steady load (a message every few tens of
// microseconds, each wait short) sysmon keeps finding that P in a system
// call, takes it and hands it off (handoffp), and then watches at its
// shortest period, 20 us: 2,000 wake-ups a second, 5% of chatd's CPU at
// 20,000 msgs/s, on top of the waking poller's trip to get a P back. A
// raw wait keeps the P running: nothing to retake, and sysmon backs off.
//
// Only while other Ps remain for everything else (GOMAXPROCS above the
// number of pollers): with one P the wait would stop every other
// goroutine. The runtime can still stop the world or scan the poller's
// stack during the wait: its preemption signal interrupts epoll_wait
// (EINTR, never restarted) and the poller reaches a safe point at its next
// call; epollWaitHold does not retry an interrupted wait itself. Wait
// yields (runtime.Gosched, the safe point the signal asked for) and then
// holds again (patch 15). An idle poller holds its P at most
// holdMsec, then blocks and lets it go, so an idle server still sleeps.
func holdBeforeBlock(procs int) bool {
	return procs > int(atomic.LoadInt32(&pollmanager.numLoops))
}
