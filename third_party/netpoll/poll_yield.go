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

package netpoll

// yieldBeforeBlock reports whether a poller that found no events should
// yield (runtime.Gosched) before it blocks in epoll_wait; procs is
// runtime.GOMAXPROCS(0).
//
// With one P the yield is what runs the goroutines the poller readied
// before its thread blocks in the system call: the P would otherwise be
// taken from the blocked thread only when sysmon next looks, up to 10 ms
// later. With more than one P a readied goroutine has already woken an
// idle P (ready calls wakep), so the yield only moves the poller to the
// global run queue and wakes yet another thread to take it from there: a
// futex wake-up and a futex sleep on another thread per idle turn, 8% of
// the server's CPU at 20,000 messages a second on two cores.
func yieldBeforeBlock(procs int) bool { return procs == 1 }
