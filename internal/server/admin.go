package server

import (
	"net"
	"runtime"
	"time"

	"github.com/chatd/chatd/internal/admin"
	"github.com/chatd/chatd/internal/proc"
)

// Admin serves the operational endpoints (package admin) on addr, never
// on the client port: /metrics from the server's collector, /readyz from
// admission and the disk, /stats from Process.
func (s *Server) Admin(addr string) (net.Addr, func() error, error) {
	return admin.Listen(addr, admin.Config{
		Metrics: metrics{s},
		Ready:   s.notReady,
		Stats:   func() any { return s.Process() },
	})
}

// notReady says why the server would refuse a new client now ("" if it
// would not): what /readyz reports to a load balancer.
func (s *Server) notReady() string {
	if why := s.admit.NotReady(); why != "" {
		return why
	}
	if s.space.Full() {
		// Clients are still let in (to read and acknowledge, which frees
		// space), but a probe should know that new messages fail.
		return "storage full: new messages refused"
	}
	return ""
}

// ProcessStats is what /stats reports. bench.Stats decodes it; the root
// package's TestBenchStatsMatchServer keeps the two in step.
type ProcessStats struct {
	Time        time.Time `json:"time"`
	Connections uint64    `json:"connections"`
	Sessions    int       `json:"sessions"`
	Users       uint64    `json:"users"`
	Goroutines  int       `json:"goroutines"`
	RSS         uint64    `json:"rss_bytes"`
	HeapAlloc   uint64    `json:"heap_alloc_bytes"`
	HeapInuse   uint64    `json:"heap_inuse_bytes"`
	Sys         uint64    `json:"sys_bytes"`
	Accepted    uint64    `json:"accepted"`
	FramesIn    uint64    `json:"frames_in"`
	BytesIn     uint64    `json:"bytes_in"`
	BytesOut    uint64    `json:"bytes_out"`
	Stored      uint64    `json:"messages_stored"`
	Pushed      uint64    `json:"entries_pushed"`
	Acked       uint64    `json:"sent_acks"`
	CPUSeconds  float64   `json:"cpu_seconds"`
	Syscalls    uint64    `json:"read_write_syscalls"` // syscr + syscw from /proc/self/io
}

// Process returns counters together with process-level readings.
func (s *Server) Process() ProcessStats {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	st := s.Stats()
	return ProcessStats{
		Time: time.Now(), Connections: st.Conn.Open, Sessions: st.Sessions, Users: st.Users,
		Goroutines: runtime.NumGoroutine(), RSS: proc.RSS(), HeapAlloc: ms.HeapAlloc, HeapInuse: ms.HeapInuse,
		Sys: ms.Sys, Accepted: st.Conn.Accepted, FramesIn: st.Conn.FramesIn, BytesIn: st.Conn.BytesIn,
		BytesOut: st.Conn.BytesOut, Stored: s.counters.stored.Load(), Pushed: s.counters.pushed.Load(),
		Acked: s.counters.sent.Load(), CPUSeconds: proc.CPUSeconds(), Syscalls: proc.RWSyscalls(),
	}
}
