package bench

import (
	"fmt"
	"io"
)

// Work is what the server did per delivered message, from its /stats
// counters (admin.Stats) before and after the measured window: where the
// CPU per message goes, counted rather than timed, so that a loaded
// machine still reads the same.
type Work struct {
	ContextSwitches float64 `json:"context_switches"` // all threads: hand-offs that found no other work
	Turns           float64 `json:"event_loop_turns"` // OnRequest calls
	InlineTurns     float64 `json:"inline_turns"`     // of those, run on the poller (the rest: hand-offs to a worker)
	Writes          float64 `json:"client_writes"`    // write(2) to clients
	LazyFlushes     float64 `json:"lazy_flushes"`     // receipts that went alone after the lazy delay
	InboxCommits    float64 `json:"inbox_commits"`    // lane batches applied
	InboxRecords    float64 `json:"inbox_records"`    // Pebble records written
	FramesIn        float64 `json:"frames_in"`        // frames from clients
	LiveAcked       float64 `json:"live_acked"`       // messages delivered live and acknowledged in time: never stored
}

func workPer(a, b Stats, msgs float64) Work {
	per := func(x, y uint64) float64 {
		if y < x { // context switches sum the threads alive at each read: one may have exited
			return 0
		}
		return float64(y-x) / msgs
	}
	w := Work{
		ContextSwitches: per(a.ContextSwitches, b.ContextSwitches),
		Turns:           per(a.Turns, b.Turns),
		InlineTurns:     per(a.InlineTurns, b.InlineTurns),
		Writes:          per(a.Writes, b.Writes),
		LazyFlushes:     per(a.LazyFlushes, b.LazyFlushes),
		InboxCommits:    per(a.InboxCommits, b.InboxCommits),
		InboxRecords:    per(a.InboxRecords, b.InboxRecords),
		FramesIn:        per(a.FramesIn, b.FramesIn),
		LiveAcked:       per(a.LiveAcked, b.LiveAcked),
	}
	return w
}

func (w Work) print(out io.Writer) {
	if w == (Work{}) {
		return // a server without these counters
	}
	fmt.Fprintf(out, "server work      per message: %.2f context switches, %.2f event-loop turns (%.2f on the poller), %.2f frames in, %.2f client writes (%.2f lazy flushes), %.2f inbox batches, %.2f Pebble records; %.0f%% never stored (live)\n",
		w.ContextSwitches, w.Turns, w.InlineTurns, w.FramesIn, w.Writes, w.LazyFlushes, w.InboxCommits, w.InboxRecords, 100*w.LiveAcked)
}
