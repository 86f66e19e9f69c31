package server

import (
	"github.com/chatd/chatd/internal/conn"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics exposes the server's counters to Prometheus. Nothing on the
// message path touches Prometheus: the server keeps atomic counters, and
// this collector reads them (and admission's, conn's, the disk's and
// Pebble's) when scraped. It stays in server, beside what it reads: a
// snapshot struct for package admin would repeat every metric once more
// and change nothing the scrape sees.
type metrics struct{ s *Server }

type desc struct {
	d *prometheus.Desc
	t prometheus.ValueType
}

func newDesc(name, help string, t prometheus.ValueType, labels ...string) desc {
	return desc{prometheus.NewDesc(name, help, labels, nil), t}
}

var (
	mConnections = newDesc("chatd_connections", "Open client connections.", prometheus.GaugeValue)
	mSessions    = newDesc("chatd_sessions", "Authenticated sessions (users online).", prometheus.GaugeValue)
	mUsers       = newDesc("chatd_registered_users", "Registered accounts.", prometheus.GaugeValue)
	mLogins      = newDesc("chatd_logins_total", "Successful authentications by kind.", prometheus.CounterValue, "kind")
	mFramesIn    = newDesc("chatd_frames_in_total", "Frames received from clients.", prometheus.CounterValue)
	mFramesOut   = newDesc("chatd_frames_out_total", "Frames queued to clients.", prometheus.CounterValue)
	mBytesIn     = newDesc("chatd_bytes_in_total", "Bytes received from clients.", prometheus.CounterValue)
	mBytesOut    = newDesc("chatd_bytes_out_total", "Bytes written to clients.", prometheus.CounterValue)
	mRouted      = newDesc("chatd_messages_routed_total", "Messages made durable and acknowledged with SENT.", prometheus.CounterValue)
	mDeliveries  = newDesc("chatd_deliveries_total", "Inbox entries (messages, receipts, group events) pushed to clients.", prometheus.CounterValue)
	mStored      = newDesc("chatd_inbox_writes_total", "Inbox operations made durable.", prometheus.CounterValue)
	mInboxDepth  = newDesc("chatd_inbox_entries", "Entries waiting in inboxes (counted at start, then tracked).", prometheus.GaugeValue)
	mDrainLag    = newDesc("chatd_drain_backlog_sessions", "Online sessions with inbox entries not yet pushed (drain in progress or window full).", prometheus.GaugeValue)
	mExpired     = newDesc("chatd_expired_entries_total", "Inbox entries deleted unacknowledged after the TTL.", prometheus.CounterValue)
	mRejects     = newDesc("chatd_rejects_total", "Connections refused or closed by the server, by reason.", prometheus.CounterValue, "reason")
	mBadInput    = newDesc("chatd_bad_input_total", "Connections closed for bad input or a stalled peer, by reason (see conn.Reason).", prometheus.CounterValue, "reason")
	mStorage     = newDesc("chatd_storage_bytes", "Data folder volume: free and total; reserve plus compaction_room is refuse_below, under which new messages get ERROR 28 until free passes resume_above; the ballast held.", prometheus.GaugeValue, "metric")
	mStorageFull = newDesc("chatd_storage_full", "1 while new messages are refused because the disk is nearly full.", prometheus.GaugeValue)
	mPebble      = newDesc("chatd_pebble", "Pebble storage engine readings.", prometheus.GaugeValue, "metric")
)

func (m metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []desc{mConnections, mSessions, mUsers, mLogins, mFramesIn, mFramesOut, mBytesIn, mBytesOut,
		mRouted, mDeliveries, mStored, mInboxDepth, mDrainLag, mExpired, mRejects, mBadInput, mStorage, mStorageFull, mPebble} {
		ch <- d.d
	}
	m.describeCluster(ch)
}

func (m metrics) Collect(ch chan<- prometheus.Metric) {
	s := m.s
	st := s.Stats()
	c := &s.counters
	rej := s.admit.Rejected()
	emit := func(d desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d.d, d.t, v, labels...)
	}
	emit(mConnections, float64(st.Conn.Open))
	emit(mSessions, float64(st.Sessions))
	emit(mUsers, float64(st.Users))
	emit(mLogins, float64(c.registers.Load()), "register")
	emit(mLogins, float64(c.logins.Load()), "login")
	emit(mLogins, float64(c.resumes.Load()), "resume")
	emit(mFramesIn, float64(st.Conn.FramesIn))
	emit(mFramesOut, float64(st.Conn.FramesOut))
	emit(mBytesIn, float64(st.Conn.BytesIn))
	emit(mBytesOut, float64(st.Conn.BytesOut))
	emit(mRouted, float64(c.sent.Load()))
	emit(mDeliveries, float64(c.pushed.Load()))
	emit(mStored, float64(c.stored.Load()))
	emit(mInboxDepth, float64(s.inbox.Entries()))
	emit(mDrainLag, float64(c.backlogged.Load()))
	emit(mExpired, float64(s.inbox.Expired()))
	for reason, v := range map[string]uint64{
		"capacity": rej.Capacity, "memory": rej.Memory, "accept_rate": rej.Rate,
		"slow_consumer": st.Conn.SlowConsumers, "idle": st.Conn.IdleClosed, "auth_timeout": st.Conn.AuthTimeouts,
		"protocol_error": st.Conn.ProtocolErrors, "read_timeout": st.Conn.ReadTimeouts, "busy": c.busy.Load(),
		"login_rate": c.loginLimited.Load(), "frame_rate": st.Conn.RateLimited, "storage_full": c.storageFull.Load(),
	} {
		emit(mRejects, float64(v), reason)
	}
	for r, v := range st.Conn.BadInput {
		emit(mBadInput, float64(v), conn.Reason(r).String())
	}
	sp := s.space.Stats()
	for name, v := range map[string]int64{"free": sp.Free, "total": sp.Total, "reserve": sp.Reserve,
		"compaction_room": sp.Room, "refuse_below": sp.Low, "resume_above": sp.Resume, "ballast": sp.Ballast} {
		emit(mStorage, float64(v), name)
	}
	emit(mStorageFull, map[bool]float64{false: 0, true: 1}[sp.Full])
	m.collectCluster(ch)
	pm := s.db.Metrics()
	var tables, l0 int64
	for i, l := range pm.Levels {
		tables += l.TablesSize
		if i == 0 {
			l0 = l.TablesCount
		}
	}
	for name, v := range map[string]float64{
		"memtable_bytes": float64(pm.MemTable.Size), "memtables": float64(pm.MemTable.Count),
		"wal_bytes": float64(pm.WAL.Size), "wal_files": float64(pm.WAL.Files),
		"sstable_bytes": float64(tables), "l0_files": float64(l0),
		"compactions": float64(pm.Compact.Count), "compaction_debt_bytes": float64(pm.Compact.EstimatedDebt),
		"flushes": float64(pm.Flush.Count), "block_cache_bytes": float64(pm.BlockCache.Size),
		"block_cache_hits": float64(pm.BlockCache.Hits), "block_cache_misses": float64(pm.BlockCache.Misses),
	} {
		emit(mPebble, v, name)
	}
}
