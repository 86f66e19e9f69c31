package admin

import "time"

// Stats is the /stats document: the server fills it, and bench, which
// drives servers in other processes, decodes it with this same type.
type Stats struct {
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
	// The work behind each message, counted (BENCHMARKS.md): context
	// switches of all threads; event-loop turns (each a hand-off from the
	// poller to a pool goroutine); write(2) calls to clients; the writes
	// the lazy flusher made (receipts that went alone after the delay); inbox lane batches and the Pebble records in them.
	ContextSwitches uint64 `json:"context_switches"`
	Turns           uint64 `json:"event_loop_turns"`
	Writes          uint64 `json:"client_writes"`
	LazyFlushes     uint64 `json:"lazy_flushes"`
	InboxCommits    uint64 `json:"inbox_commits"`
	InboxRecords    uint64 `json:"inbox_records"`
}
