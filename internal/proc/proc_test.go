package proc

import (
	"os"
	"runtime"
	"testing"
	"time"
)

// TestHostMemoryHoldsThisProcess: without a cgroup limit, admission's
// memory limit is the machine's RAM, which holds at least this process.
func TestHostMemoryHoldsThisProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc is Linux's")
	}
	mem, rss := HostMemory(), RSS()
	if rss == 0 || mem < rss {
		t.Fatalf("host memory %d bytes, this process's RSS %d", mem, rss)
	}
	if lim := MemoryLimit(); lim == 0 {
		t.Fatal("no memory limit: neither the cgroup nor /proc/meminfo was read")
	}
}

// TestReadingsMove: RSS grows when the process touches memory, CPU time
// and system calls only go up while it works.
func TestReadingsMove(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc is Linux's")
	}
	cpu0, sys0, rss0 := CPUSeconds(), RWSyscalls(), RSS()
	buf := make([]byte, 64<<20)
	for i := range buf {
		buf[i] = byte(i) // touch every page so that it is resident
	}
	// Spin until the kernel's 10 ms CPU clock ticks at least twice.
	for deadline := time.Now().Add(5 * time.Second); CPUSeconds() < cpu0+0.02 && time.Now().Before(deadline); {
	}
	if got := CPUSeconds(); got < cpu0+0.02 {
		t.Errorf("CPU seconds %v after spinning, %v before", got, cpu0)
	}
	if got := RWSyscalls(); got <= sys0 {
		// Reading /proc/self/io itself is a read system call.
		t.Errorf("read/write syscalls %d, %d before", got, sys0)
	}
	if got := RSS(); got < rss0+32<<20 {
		t.Errorf("RSS %d after touching 64 MiB, %d before", got, rss0)
	}
	runtime.KeepAlive(buf)
}

// TestContextSwitchesCount: a thread that blocks in the kernel switches
// out, and the count of every thread sees it.
func TestContextSwitchesCount(t *testing.T) {
	before := ContextSwitches()
	if before == 0 {
		t.Skip("no /proc/self/task here")
	}
	runtime.LockOSThread() // this thread sleeps in the kernel, again and again
	defer runtime.UnlockOSThread()
	for i := 0; i < 20; i++ {
		time.Sleep(time.Millisecond) // the sleeping is what is measured, not a wait for a condition
	}
	if after := ContextSwitches(); after < before+10 {
		t.Fatalf("context switches %d after 20 sleeps, %d before", after, before)
	}
}

// TestCPUOfAnotherProcess: read from outside, by pid, the CPU time and
// RSS are the ones the process reads of itself; a pid that is gone reads
// as 0.
func TestCPUOfAnotherProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc is Linux's")
	}
	cpu0 := CPUSeconds()
	for deadline := time.Now().Add(5 * time.Second); CPUSeconds() < cpu0+0.02 && time.Now().Before(deadline); {
	}
	if self, out := RSS(), RSSOf(os.Getpid()); self == 0 || out < self/2 || out > 2*self {
		t.Errorf("RSS by pid %d, of self %d", out, self)
	}
	self, out := CPUSeconds(), CPUSecondsOf(os.Getpid())
	if self == 0 || out < self || out > self+0.5 {
		t.Errorf("CPU seconds by pid %v, of self %v", out, self)
	}
	if got, rss := CPUSecondsOf(1<<30), RSSOf(1<<30); got != 0 || rss != 0 {
		t.Errorf("a missing pid: %v CPU seconds, %d B RSS; want 0", got, rss)
	}
}
