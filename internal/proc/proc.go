// Package proc reads what this process uses and what the machine allows
// it, from /proc and the cgroup file system: resident memory for the
// memory watermark (admission) and /stats (admin), CPU time and system
// calls for /stats, and the memory limit the watermark is a fraction of.
// Every reader returns 0 where the file is missing (not Linux, or a
// sandbox), so callers treat 0 as "unknown", never as an error.
//
// `chatd sysctl` asks HostMemory too, for another question (how much kernel
// memory TCP buffers may take).
package proc

import (
	"os"
	"strconv"
	"strings"
)

// RSS is the resident set size in bytes (/proc/self/statm).
func RSS() uint64 { return rss("/proc/self/statm") }

// RSSOf is the resident set size of process pid (/proc/PID/statm).
func RSSOf(pid int) uint64 { return rss("/proc/" + strconv.Itoa(pid) + "/statm") }

func rss(path string) uint64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseUint(f[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}

// CPUSeconds is the user plus system CPU time of this process
// (/proc/self/stat).
func CPUSeconds() float64 { return cpuSeconds("/proc/self/stat") }

// CPUSecondsOf is the user plus system CPU time of process pid, read from
// outside it (/proc/PID/stat), so that a benchmark measures any server
// the same way, whatever it reports about itself.
func CPUSecondsOf(pid int) float64 { return cpuSeconds("/proc/" + strconv.Itoa(pid) + "/stat") }

func cpuSeconds(path string) float64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the command name may hold spaces and parentheses
	if i < 0 || i+2 > len(s) {
		return 0
	}
	f := strings.Fields(s[i+2:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	return float64(ut+st) / 100 // USER_HZ is 100 on Linux
}

// RWSyscalls counts the read- and write-type system calls this process
// made (/proc/self/io syscr + syscw): those through the file layer, such
// as Pebble's WAL writes and socket I/O made with read/write. The kernel
// does not count recvfrom or sendto here, and chatd's server makes its
// socket I/O with them (third_party/netpoll/PATCHES.md 16).
func RWSyscalls() uint64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0
	}
	var n uint64
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ": "); ok && (k == "syscr" || k == "syscw") {
			x, _ := strconv.ParseUint(v, 10, 64)
			n += x
		}
	}
	return n
}

// MemoryLimit is the memory this process may use: the cgroup (v2) limit
// when one is set, else the machine's RAM.
func MemoryLimit() uint64 {
	if b, err := os.ReadFile("/sys/fs/cgroup/memory.max"); err == nil {
		// "max" (no limit) fails to parse and falls through to the RAM.
		if v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil {
			return v
		}
	}
	return HostMemory()
}

// HostMemory is the machine's RAM in bytes (/proc/meminfo MemTotal).
func HostMemory() uint64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
			kb, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}

// ContextSwitches sums the voluntary and involuntary context switches of
// every thread of this process (/proc/self/task/*/status). A voluntary one
// is a thread that went to sleep (a futex wait, epoll_wait with nothing
// ready): the cost of a hand-off between goroutines that found no other
// work, which per message is what moderate load is made of.
func ContextSwitches() uint64 {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return 0
	}
	var n uint64
	for _, t := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + t.Name() + "/status")
		if err != nil {
			continue // the thread exited
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "voluntary_ctxt_switches:"); ok {
				c, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
				n += c
			} else if v, ok := strings.CutPrefix(line, "nonvoluntary_ctxt_switches:"); ok {
				c, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
				n += c
			}
		}
	}
	return n
}
