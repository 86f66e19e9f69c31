package server

import (
	"github.com/chatd/chatd/internal/conn"
	"github.com/chatd/chatd/internal/proc"
	"github.com/chatd/chatd/internal/version"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics exposes the server's counters to Prometheus. Nothing on the
// message path touches Prometheus: the server keeps atomic counters and
// histograms (metrics_hist.go), and this collector reads them (and
// admission's, conn's, the disk's and Pebble's) when scraped. It stays in
// server, beside what it reads: a snapshot struct for package admin would
// repeat every metric once more and change nothing the scrape sees.
//
// Names follow Prometheus's conventions: the unit last (_seconds,
// _bytes), counters end in _total, one metric per thing measured (a label
// splits a metric into parts of one kind, never into unrelated
// readings). README's metrics section lists them all.
type metrics struct{ s *Server }

type desc struct {
	d *prometheus.Desc
	t prometheus.ValueType
}

func newDesc(name, help string, t prometheus.ValueType, labels ...string) desc {
	return desc{prometheus.NewDesc(name, help, labels, nil), t}
}

func newHistDesc(name, help string, labels ...string) desc {
	return desc{d: prometheus.NewDesc(name, help, labels, nil)} // t unused: emitted with hist.metric
}

var (
	mBuildInfo   = newDesc("chatd_build_info", "Always 1: the running build's module version, VCS commit and Go release.", prometheus.GaugeValue, "version", "commit", "goversion")
	mConnections = newDesc("chatd_connections", "Open client connections.", prometheus.GaugeValue)
	mMaxConns    = newDesc("chatd_max_connections", "Connection capacity: past it new connections get GOAWAY (chatd_rejects_total{reason=\"capacity\"}).", prometheus.GaugeValue)
	mWatermark   = newDesc("chatd_memory_watermark_bytes", "Memory use above which new connections get GOAWAY.", prometheus.GaugeValue)
	mAdmission   = newDesc("chatd_admission_state", "1 for the server's current admission state, 0 for the others: accepting, or why /readyz answers 503.", prometheus.GaugeValue, "state")
	mAccepted    = newDesc("chatd_connections_accepted_total", "Client connections accepted (before admission).", prometheus.CounterValue)
	mSessions    = newDesc("chatd_sessions", "Authenticated sessions (users online).", prometheus.GaugeValue)
	mUsers       = newDesc("chatd_registered_users", "Registered accounts.", prometheus.GaugeValue)
	mLogins      = newDesc("chatd_logins_total", "Successful authentications by kind.", prometheus.CounterValue, "kind")
	mSwept       = newDesc("chatd_sessions_swept_total", "Account sessions past -session-idle that the sweep deleted (with their tokens) without their being touched.", prometheus.CounterValue)
	mSweeps      = newDesc("chatd_session_sweeps_total", "Passes of the session sweep that walked every session record homed here.", prometheus.CounterValue)
	mLoginFails  = newDesc("chatd_login_failures_total", "Failed authentications (REGISTER, LOGIN, RESUME) by reason; each is logged with the client's address, at most 10 a minute.", prometheus.CounterValue, "reason")
	mFramesIn    = newDesc("chatd_frames_in_total", "Frames received from clients.", prometheus.CounterValue)
	mFramesOut   = newDesc("chatd_frames_out_total", "Frames queued to clients.", prometheus.CounterValue)
	mBytesIn     = newDesc("chatd_bytes_in_total", "Bytes received from clients.", prometheus.CounterValue)
	mBytesOut    = newDesc("chatd_bytes_out_total", "Bytes written to clients.", prometheus.CounterValue)
	mTurns       = newDesc("chatd_event_loop_turns_total", "Event-loop turns: a connection's buffered input read and handled.", prometheus.CounterValue)
	mInline      = newDesc("chatd_event_loop_turns_inline_total", "Event-loop turns run on the poller itself (whole frames that never wait); the others were each a hand-off to a worker goroutine.", prometheus.CounterValue)
	mWrites      = newDesc("chatd_client_writes_total", "System calls that write to clients (sendto(2)).", prometheus.CounterValue)
	mLazy        = newDesc("chatd_lazy_flushes_total", "Writes the lazy flusher made: receipts that went alone after the receipt delay.", prometheus.CounterValue)
	mSyscalls    = newDesc("chatd_read_write_syscalls_total", "read- and write-type system calls of the process through the file layer (syscr + syscw): file I/O; client sockets are read with recvfrom and written with sendto, which it does not count.", prometheus.CounterValue)
	mSwitches    = newDesc("chatd_context_switches_total", "Context switches of all the process's threads.", prometheus.CounterValue)
	mRouted      = newDesc("chatd_messages_routed_total", "Messages acknowledged with SENT: made durable, or delivered live and acknowledged by their recipients.", prometheus.CounterValue)
	mLivePushed  = newDesc("chatd_live_pushed_total", "Entries (messages and delivered receipts) pushed before they were stored (live delivery).", prometheus.CounterValue)
	mLiveAcked   = newDesc("chatd_live_acked_total", "Messages delivered live and acknowledged in time: never stored.", prometheus.CounterValue)
	mSentDeliv   = newDesc("chatd_sent_delivered_total", "Messages acknowledged live and answered SENT_DELIVERED (the sender asked with OPTIONS): their delivered receipt was never made.", prometheus.CounterValue)
	mLiveStored  = newDesc("chatd_live_stored_total", "Entries pushed live and then stored because no ACK came in time.", prometheus.CounterValue)
	mDeliveries  = newDesc("chatd_deliveries_total", "Inbox entries (messages, receipts, group events) pushed to clients.", prometheus.CounterValue)
	mStored      = newDesc("chatd_inbox_writes_total", "Inbox operations made durable.", prometheus.CounterValue)
	mCommits     = newDesc("chatd_inbox_commits_total", "Inbox lane batches applied (each one Pebble commit and sync).", prometheus.CounterValue)
	mRecords     = newDesc("chatd_inbox_records_total", "Pebble records (sets and deletes) in the inbox lane batches.", prometheus.CounterValue)
	mInboxDepth  = newDesc("chatd_inbox_entries", "Entries waiting in inboxes (counted at start, then tracked).", prometheus.GaugeValue)
	mDrainLag    = newDesc("chatd_drain_backlog_sessions", "Online sessions with inbox entries not yet pushed (drain in progress or window full).", prometheus.GaugeValue)
	mExpired     = newDesc("chatd_expired_entries_total", "Inbox entries deleted unacknowledged after the TTL.", prometheus.CounterValue)
	mRejects     = newDesc("chatd_rejects_total", "Connections refused or closed by the server, by reason.", prometheus.CounterValue, "reason")
	mBadInput    = newDesc("chatd_bad_input_total", "Connections closed for bad input or a stalled peer, by reason (see conn.Reason).", prometheus.CounterValue, "reason")
	mStorage     = newDesc("chatd_storage_bytes", "Data folder volume: free and total; reserve plus compaction_room is refuse_below, under which new messages get ERROR 28 until free passes resume_above; the ballast held.", prometheus.GaugeValue, "metric")
	mStorageFull = newDesc("chatd_storage_full", "1 while new messages are refused because the disk is nearly full.", prometheus.GaugeValue)

	mSyncSeconds     = newHistDesc("chatd_inbox_sync_seconds", "Inbox lane batches from commit to durable: the fsync a SENT waits for.")
	mSendSentSeconds = newHistDesc("chatd_send_to_sent_seconds", "From a SEND's arrival to its SENT queued (1:1 and group SENDs stored on this node).")
	mDeliverySeconds = newHistDesc("chatd_delivery_seconds", "From an inbox entry's store to its DELIVER queued on the recipient's connection, by path: push (at once) or drain (the recipient was offline or behind). Good to 1 ms. Entries delivered live, before any store, are not in it.", "path")
	mLoginSeconds    = newHistDesc("chatd_login_seconds", "Successful authentications from the frame's arrival to WELCOME queued, by kind.", "kind")
)

// pebbleMetrics split Pebble's readings into one metric each.
var (
	mPebbleMemtableBytes = newDesc("chatd_pebble_memtable_bytes", "Bytes in Pebble memtables.", prometheus.GaugeValue)
	mPebbleMemtables     = newDesc("chatd_pebble_memtables", "Pebble memtables (the mutable one and those waiting to flush).", prometheus.GaugeValue)
	mPebbleWALBytes      = newDesc("chatd_pebble_wal_bytes", "Bytes in the live write-ahead log files.", prometheus.GaugeValue)
	mPebbleWALFiles      = newDesc("chatd_pebble_wal_files", "Live write-ahead log files.", prometheus.GaugeValue)
	mPebbleSSTBytes      = newDesc("chatd_pebble_sstable_bytes", "Bytes in sstables over all levels.", prometheus.GaugeValue)
	mPebbleL0Files       = newDesc("chatd_pebble_l0_files", "Sstables in level 0 (many: compaction is behind, writes will stall).", prometheus.GaugeValue)
	mPebbleCompactions   = newDesc("chatd_pebble_compactions_total", "Compactions run.", prometheus.CounterValue)
	mPebbleDebt          = newDesc("chatd_pebble_compaction_debt_bytes", "Estimated bytes compaction must rewrite to settle the LSM.", prometheus.GaugeValue)
	mPebbleFlushes       = newDesc("chatd_pebble_flushes_total", "Memtable flushes.", prometheus.CounterValue)
	mPebbleCacheBytes    = newDesc("chatd_pebble_block_cache_bytes", "Bytes in the block cache.", prometheus.GaugeValue)
	mPebbleCacheHits     = newDesc("chatd_pebble_block_cache_hits_total", "Block cache hits.", prometheus.CounterValue)
	mPebbleCacheMisses   = newDesc("chatd_pebble_block_cache_misses_total", "Block cache misses.", prometheus.CounterValue)
	mPrekeys             = newDesc("chatd_prekey_events_total", "Prekey directory events, by kind: uploads, bundles handed out, bundles that fell back to the last-resort KEM key, refused uploads (bad signature, invalid), rate-limited fetches, KEYS_LOW pushes, identity changes.", prometheus.CounterValue, "event")
)

var allDescs = []desc{
	mBuildInfo, mConnections, mMaxConns, mWatermark, mAdmission, mAccepted, mSessions, mUsers, mLogins, mLoginFails, mSwept, mSweeps,
	mFramesIn, mFramesOut, mBytesIn, mBytesOut, mTurns, mInline, mWrites, mLazy, mSyscalls, mSwitches,
	mRouted, mLivePushed, mLiveAcked, mSentDeliv, mLiveStored, mDeliveries, mStored, mCommits, mRecords, mInboxDepth, mDrainLag, mExpired, mRejects, mBadInput,
	mStorage, mStorageFull, mSyncSeconds, mSendSentSeconds, mDeliverySeconds, mLoginSeconds,
	mPebbleMemtableBytes, mPebbleMemtables, mPebbleWALBytes, mPebbleWALFiles, mPebbleSSTBytes, mPebbleL0Files,
	mPebbleCompactions, mPebbleDebt, mPebbleFlushes, mPebbleCacheBytes, mPebbleCacheHits, mPebbleCacheMisses,
	mPrekeys,
}

// Admission states (chatd_admission_state): accepting, or the reason
// notReady gives, as a label.
var admissionStates = []string{"accepting", "shutting_down", "at_capacity", "memory_watermark", "cluster_not_ready", "storage_full"}

// admissionState names the server's admission state.
func (s *Server) admissionState() string {
	switch why := s.admit.NotReady(); why {
	case "":
	case "shutting down":
		return "shutting_down"
	case "at connection capacity":
		return "at_capacity"
	default:
		return "memory_watermark"
	}
	switch {
	case s.clusterNotReady() != "":
		return "cluster_not_ready"
	case s.space.Full():
		return "storage_full"
	}
	return "accepting"
}

func (m metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d.d
	}
	m.describeCluster(ch)
	m.describePush(ch)
}

func (m metrics) Collect(ch chan<- prometheus.Metric) {
	s := m.s
	st := s.Stats()
	c := &s.counters
	rej := s.admit.Rejected()
	emit := func(d desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d.d, d.t, v, labels...)
	}
	bi := version.Get()
	emit(mBuildInfo, 1, bi.Version, bi.Commit, bi.Go)
	emit(mConnections, float64(st.Conn.Open))
	emit(mMaxConns, float64(s.cfg.MaxConns))
	emit(mWatermark, float64(s.cfg.MemoryLimit)*s.cfg.MemoryWatermark)
	state := s.admissionState()
	for _, name := range admissionStates {
		emit(mAdmission, map[bool]float64{false: 0, true: 1}[name == state], name)
	}
	emit(mAccepted, float64(st.Conn.Accepted))
	emit(mSessions, float64(st.Sessions))
	emit(mUsers, float64(st.Users))
	emit(mLogins, float64(c.registers.Load()), "register")
	emit(mLogins, float64(c.logins.Load()), "login")
	emit(mLogins, float64(c.resumes.Load()), "resume")
	emit(mSwept, float64(c.sessionsSwept.Load()))
	emit(mSweeps, float64(c.sweepPasses.Load()))
	for r := range numFailReasons {
		emit(mLoginFails, float64(s.fails.total[r].Load()), r.String())
	}
	emit(mFramesIn, float64(st.Conn.FramesIn))
	emit(mFramesOut, float64(st.Conn.FramesOut))
	emit(mBytesIn, float64(st.Conn.BytesIn))
	emit(mBytesOut, float64(st.Conn.BytesOut))
	emit(mTurns, float64(st.Conn.Turns))
	emit(mInline, float64(st.Conn.InlineTurns))
	emit(mWrites, float64(st.Conn.Writes))
	emit(mLazy, float64(st.Conn.LazyFlushes))
	emit(mSyscalls, float64(proc.RWSyscalls()))
	emit(mSwitches, float64(proc.ContextSwitches()))
	emit(mRouted, float64(c.sent.Load()))
	emit(mDeliveries, float64(c.pushed.Load()))
	live := s.inbox.Live()
	emit(mLivePushed, float64(live.Pushed))
	emit(mLiveAcked, float64(live.Acked))
	emit(mSentDeliv, float64(c.sentDelivered.Load()))
	emit(mLiveStored, float64(live.Stored))
	emit(mStored, float64(c.stored.Load()))
	commits, records := s.inbox.Work()
	emit(mCommits, float64(commits))
	emit(mRecords, float64(records))
	emit(mInboxDepth, float64(s.inbox.Entries()))
	emit(mDrainLag, float64(c.backlogged.Load()))
	emit(mExpired, float64(s.inbox.Expired()))
	for reason, v := range map[string]uint64{
		"capacity": rej.Capacity, "memory": rej.Memory, "accept_rate": rej.Rate,
		"slow_consumer": st.Conn.SlowConsumers, "idle": st.Conn.IdleClosed, "auth_timeout": st.Conn.AuthTimeouts,
		"protocol_error": st.Conn.ProtocolErrors, "read_timeout": st.Conn.ReadTimeouts, "busy": c.busy.Load(),
		"login_rate": c.loginLimited.Load(), "frame_rate": st.Conn.RateLimited, "storage_full": c.storageFull.Load(),
		"held": c.held.Load(), "remote_sends": c.remoteFull.Load(),
	} {
		emit(mRejects, float64(v), reason)
	}
	for r, v := range st.Conn.BadInput {
		emit(mBadInput, float64(v), conn.Reason(r).String())
	}
	k := &c.keys
	for event, v := range map[string]uint64{
		"upload": k.uploads.Load(), "bundle": k.bundles.Load(), "last_resort": k.lastResort.Load(),
		"bad_signature": k.badSignature.Load(), "invalid": k.invalid.Load(), "fetch_limited": k.fetchLimited.Load(),
		"low": k.low.Load(), "identity_changed": k.identityChanged.Load(),
	} {
		emit(mPrekeys, float64(v), event)
	}
	sp := s.space.Stats()
	for name, v := range map[string]int64{"free": sp.Free, "total": sp.Total, "reserve": sp.Reserve,
		"compaction_room": sp.Room, "refuse_below": sp.Low, "resume_above": sp.Resume, "ballast": sp.Ballast} {
		emit(mStorage, float64(v), name)
	}
	emit(mStorageFull, map[bool]float64{false: 0, true: 1}[sp.Full])

	l := &s.lat
	ch <- histMetric(l.sync, mSyncSeconds.d)
	ch <- histMetric(l.sendSent, mSendSentSeconds.d)
	ch <- histMetric(l.push, mDeliverySeconds.d, "push")
	ch <- histMetric(l.drain, mDeliverySeconds.d, "drain")
	for k := range numLoginKinds {
		ch <- histMetric(l.login[k], mLoginSeconds.d, k.String())
	}

	m.collectCluster(ch)
	m.collectPebble(emit)
	m.collectPush(ch, emit)
}

func (m metrics) collectPebble(emit func(d desc, v float64, labels ...string)) {
	pm := m.s.db.Metrics()
	var tables, l0 int64
	for i, l := range pm.Levels {
		tables += l.TablesSize
		if i == 0 {
			l0 = l.TablesCount
		}
	}
	emit(mPebbleMemtableBytes, float64(pm.MemTable.Size))
	emit(mPebbleMemtables, float64(pm.MemTable.Count))
	emit(mPebbleWALBytes, float64(pm.WAL.Size))
	emit(mPebbleWALFiles, float64(pm.WAL.Files))
	emit(mPebbleSSTBytes, float64(tables))
	emit(mPebbleL0Files, float64(l0))
	emit(mPebbleCompactions, float64(pm.Compact.Count))
	emit(mPebbleDebt, float64(pm.Compact.EstimatedDebt))
	emit(mPebbleFlushes, float64(pm.Flush.Count))
	emit(mPebbleCacheBytes, float64(pm.BlockCache.Size))
	emit(mPebbleCacheHits, float64(pm.BlockCache.Hits))
	emit(mPebbleCacheMisses, float64(pm.BlockCache.Misses))
}
