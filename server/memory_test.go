package server

import (
	"runtime"
	"testing"
)

// TestAdmissionHostMemory: without a cgroup limit, admission's memory
// limit is the machine's RAM, which holds at least this process.
func TestAdmissionHostMemory(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc/meminfo is Linux's")
	}
	mem, rss := hostMemory(), readRSS()
	if mem == 0 || mem < rss {
		t.Fatalf("host memory %d bytes, this process's RSS %d", mem, rss)
	}
}
