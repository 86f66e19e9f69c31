package server

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Admin serves operational endpoints on their own listener, never on the
// client port: /metrics (Prometheus), /stats (JSON, what `chatd bench`
// reads from a server it did not start), /healthz (the process answers),
// /readyz (it accepts clients: not draining, below its admission limits)
// and /debug/pprof.
func (s *Server) Admin(addr string) (net.Addr, func() error, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("server: admin listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("gc") == "1" {
			debug.FreeOSMemory() // settle the heap and return free pages before a density reading
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(s.Process())
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if why := s.notReady(); why != "" {
			http.Error(w, why, http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	mux.Handle("/metrics", promhttp.HandlerFor(s.registry(), promhttp.HandlerOpts{}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	return ln.Addr(), srv.Close, nil
}

// ProcessStats is what /stats reports.
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
		Goroutines: runtime.NumGoroutine(), RSS: readRSS(), HeapAlloc: ms.HeapAlloc, HeapInuse: ms.HeapInuse,
		Sys: ms.Sys, Accepted: st.Conn.Accepted, FramesIn: st.Conn.FramesIn, BytesIn: st.Conn.BytesIn,
		BytesOut: st.Conn.BytesOut, Stored: s.counters.stored.Load(), Pushed: s.counters.pushed.Load(),
		Acked: s.counters.sent.Load(), CPUSeconds: cpuSeconds(), Syscalls: rwSyscalls(),
	}
}

// rwSyscalls counts the read- and write-type system calls this process
// made (/proc/self/io syscr + syscw): every socket read, write, and
// Pebble WAL write.
func rwSyscalls() uint64 {
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

// readRSS reads the resident set size from /proc (0 where there is none).
func readRSS() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
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

// cpuSeconds reads user+system CPU time of this process from /proc.
func cpuSeconds() float64 {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[i+2:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	return float64(ut+st) / 100 // USER_HZ is 100 on Linux
}
