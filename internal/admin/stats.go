package admin

import "time"

// Stats is the /stats document: the server fills it, and bench, which
// drives servers in other processes, decodes it with this same type.
//
// Each key but time is the name of the /metrics metric with the same
// reading (the server's test checks that each exists), so the two never
// disagree on what a number means. /stats stays for bench: one JSON read,
// and ?gc=1 settles the heap first.
type Stats struct {
	Time        time.Time `json:"time"`
	Connections uint64    `json:"chatd_connections"`
	Sessions    int       `json:"chatd_sessions"`
	Users       uint64    `json:"chatd_registered_users"`
	Goroutines  int       `json:"go_goroutines"`
	RSS         uint64    `json:"process_resident_memory_bytes"`
	HeapAlloc   uint64    `json:"go_memstats_heap_alloc_bytes"`
	HeapInuse   uint64    `json:"go_memstats_heap_inuse_bytes"`
	Sys         uint64    `json:"go_memstats_sys_bytes"`
	Accepted    uint64    `json:"chatd_connections_accepted_total"`
	FramesIn    uint64    `json:"chatd_frames_in_total"`
	BytesIn     uint64    `json:"chatd_bytes_in_total"`
	BytesOut    uint64    `json:"chatd_bytes_out_total"`
	Stored      uint64    `json:"chatd_inbox_writes_total"`
	Pushed      uint64    `json:"chatd_deliveries_total"`
	Acked       uint64    `json:"chatd_messages_routed_total"`
	CPUSeconds  float64   `json:"process_cpu_seconds_total"`
	Syscalls    uint64    `json:"chatd_read_write_syscalls_total"` // syscr + syscw from /proc/self/io
	// The work behind each message, counted (BENCHMARKS.md): context
	// switches of all threads; event-loop turns, and those of them run on
	// the poller (the rest each a hand-off to a worker); write(2) calls to clients; the writes
	// the lazy flusher made (receipts that went alone after the delay); inbox lane batches and the Pebble records in them.
	ContextSwitches uint64 `json:"chatd_context_switches_total"`
	Turns           uint64 `json:"chatd_event_loop_turns_total"`
	InlineTurns     uint64 `json:"chatd_event_loop_turns_inline_total"`
	Writes          uint64 `json:"chatd_client_writes_total"`
	LazyFlushes     uint64 `json:"chatd_lazy_flushes_total"`
	InboxCommits    uint64 `json:"chatd_inbox_commits_total"`
	InboxRecords    uint64 `json:"chatd_inbox_records_total"`
	// Messages delivered live and acknowledged in time: never stored.
	LiveAcked uint64 `json:"chatd_live_acked_total"`
}
