package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Space watches the free space of the data folder's volume so that the
// server refuses new data before Pebble runs out of disk. Pebble cannot
// survive ENOSPC on its write-ahead log or MANIFEST: in v2.1.7 a failed
// WAL write makes DB.Apply call Logger.Fatalf ("pebble: fatal commit
// error") and a failed MANIFEST write calls Fatalf too, so the process
// exits. (Failed flushes and compactions are only background errors and
// are retried.) The only defence is to stop writing early.
//
// A watcher goroutine reads statfs every Interval near the mark (less
// often with more free space: wait) and keeps one atomic flag, Full, that
// the message path reads (one load, no syscall).
//
//	Low    = Reserve + Room
//	Resume = Low + Hysteresis    (default Ballast + 2 x MemTableSize)
//	free < Low                -> full: refuse new messages, release the ballast,
//	                             flush and compact away acknowledged entries
//	full and free >= Resume   -> not full: recreate the ballast, accept again
//
// Resume sits above Low by at least the ballast and a memtable, by default
// by the ballast and two memtables (the WAL of one
// and the flushed table of another, the space that comes and goes while
// writes go on), so recreating the ballast cannot drop free space back
// below Low (no flapping).
//
// Room is the largest compaction Pebble may start by itself: the bytes of
// L0 plus those of the level L0 compacts into. A compaction writes its
// output before it deletes its inputs, and in a small database every L0
// table overlaps the whole base level (dedup keys are random, so each
// flushed table spans the key space), so the output can be as large as the
// database. Measured on a 32 MiB tmpfs: without Room, an automatic L0
// compaction of 16 MiB of live messages took free space from 9 MiB to 0
// while the server refused messages. In a large database the base level
// is one of several and Room stays small next to the volume.
//
// While full, acknowledgements still write: each is a tombstone in the WAL
// and a memtable, and the space it frees returns only after a flush and a
// compaction, which need space of their own. Reserve must cover two
// memtables of WAL, one flushed table, and whatever is written between two
// readings of statfs (the write rate times Interval). The ballast is a file of
// allocated blocks kept in the data folder for the day that estimate is
// wrong: it is deleted on entering the full state, and also from inside
// Pebble's file system the moment a write meets ENOSPC (vfs.OnDiskFull,
// which then retries the write once), which is how CockroachDB uses its
// EMERGENCY_BALLAST.
type Space struct {
	// Static after OpenSpace.
	dir      string
	ballast  string // path of the ballast file
	o        SpaceOptions
	log      *zap.Logger
	reserve  int64
	hyst     int64
	ballastN int64
	memtable int64

	full        atomic.Bool
	free, total atomic.Int64 // last statfs reading
	room        atomic.Int64 // bytes the largest automatic compaction may write
	hasBallast  atomic.Bool
	entered     atomic.Uint64 // times the full state was entered
	emergencies atomic.Uint64 // ENOSPC seen by Pebble's file system

	mu sync.Mutex // serialises ballast creation and removal

	// Owned by the watcher goroutine.
	db        *pebble.DB
	reclaimAt time.Time
	reclaim   chan struct{} // one reclaim at a time
	stop      chan struct{}
	done      sync.WaitGroup
}

// SpaceOptions tune the watcher. A zero field means its default.
type SpaceOptions struct {
	// Reserve is the free space below which new messages are refused.
	// Default the larger of 4 memtables and 1% of the volume.
	Reserve int64
	// Ballast is the size of the emergency ballast file. Default 1% of the
	// volume, at most 1 GiB; negative turns it off.
	Ballast int64
	// Hysteresis is how far above the refusing mark free space must rise
	// before messages are accepted again. Default the ballast plus two
	// memtables; at least the ballast plus one.
	Hysteresis int64
	// MemTableSize is Pebble's memtable size (Options.MemTableSize); it sizes
	// the defaults. Default 64 MiB.
	MemTableSize int64
	// Interval is how often statfs is read near the mark. Default 100 ms:
	// a Reserve of 256 MiB then covers writes of up to 2.5 GiB/s. With
	// more free space the watcher reads less often, in proportion, at
	// least every 10 Intervals (wait).
	Interval time.Duration
	// ReclaimEvery is how often, while full, acknowledged entries are
	// flushed and compacted away. Default 1 s.
	ReclaimEvery time.Duration
	Logger       *zap.Logger
}

// BallastName is the ballast file's name inside the data folder. Deleting
// it by hand frees its space for an operator in an emergency.
const BallastName = "EMERGENCY_BALLAST"

// OpenSpace reads the volume holding dir (creating dir if needed), sets
// the thresholds and creates the ballast if there is room for it.
func OpenSpace(dir string, o SpaceOptions) (*Space, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("store: data folder: %w", err)
	}
	// A folder another chatd holds is refused before the ballast is
	// touched: a second server with another --ballast would otherwise
	// delete or resize the running one's. (Open takes the lock for good;
	// this probe leaves a start racing another start to Open's lock.)
	l, err := lockPID(dir)
	if err != nil {
		return nil, err
	}
	l.Close()
	if o.MemTableSize == 0 {
		o.MemTableSize = 64 << 20
	}
	if o.Interval == 0 {
		o.Interval = 100 * time.Millisecond
	}
	if o.ReclaimEvery == 0 {
		o.ReclaimEvery = time.Second
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	sp := &Space{dir: dir, ballast: filepath.Join(dir, BallastName), o: o, log: o.Logger, memtable: o.MemTableSize,
		reclaim: make(chan struct{}, 1), stop: make(chan struct{})}
	free, total, err := statfs(dir)
	if err != nil {
		return nil, err
	}
	sp.free.Store(free)
	sp.total.Store(total)
	sp.reserve = o.Reserve
	if sp.reserve == 0 {
		sp.reserve = max(4*o.MemTableSize, total/100)
	}
	sp.ballastN = max(o.Ballast, 0)
	if o.Ballast == 0 {
		sp.ballastN = min(total/100, 1<<30)
	}
	sp.hyst = max(o.Hysteresis, sp.ballastN+o.MemTableSize)
	if o.Hysteresis == 0 {
		sp.hyst = sp.ballastN + 2*o.MemTableSize
	}
	if sp.reserve >= total {
		return nil, fmt.Errorf("store: storage reserve %d bytes is not below the volume size %d", sp.reserve, total)
	}
	if fi, err := os.Stat(sp.ballast); err == nil && fi.Size() == sp.ballastN && sp.ballastN > 0 {
		sp.hasBallast.Store(true) // kept from the last run
	} else if err == nil {
		os.Remove(sp.ballast) // of another size, or the ballast is now off
		if free, _, err = statfs(dir); err != nil {
			return nil, err
		}
	}
	if free < sp.low() {
		sp.enter(free, "at start")
	} else {
		sp.makeBallast()
	}
	return sp, nil
}

// Watch starts the watcher; db is what it flushes and compacts when full.
func (sp *Space) Watch(db *pebble.DB) {
	sp.db = db
	sp.done.Add(1)
	go sp.watch()
}

// Close stops the watcher (and any reclaim it started).
func (sp *Space) Close() {
	close(sp.stop)
	sp.done.Wait()
}

// Full reports whether new data must be refused. It costs one atomic load.
func (sp *Space) Full() bool { return sp.full.Load() }

// low is the free space below which the state turns full.
func (sp *Space) low() int64 { return sp.reserve + sp.room.Load() }

// resume is the free space at which it turns back.
func (sp *Space) resume() int64 { return sp.low() + sp.hyst }

// SpaceStats is what the watcher last saw.
type SpaceStats struct {
	Free, Total      int64 // bytes, from the last statfs
	Reserve, Room    int64 // the configured reserve; room for the largest compaction
	Low, Resume      int64 // the thresholds now
	Ballast          int64 // bytes held by the ballast now (0 when released)
	Full             bool
	Entered          uint64 // times the full state was entered
	ENOSPCRecoveries uint64 // ENOSPC errors Pebble's file system met
}

// Stats returns the last readings.
func (sp *Space) Stats() SpaceStats {
	st := SpaceStats{Free: sp.free.Load(), Total: sp.total.Load(), Reserve: sp.reserve, Room: sp.room.Load(),
		Low: sp.low(), Resume: sp.resume(),
		Full: sp.full.Load(), Entered: sp.entered.Load(), ENOSPCRecoveries: sp.emergencies.Load()}
	if sp.hasBallast.Load() {
		st.Ballast = sp.ballastN
	}
	return st
}

func (sp *Space) watch() {
	defer sp.done.Done()
	t := time.NewTimer(sp.o.Interval)
	defer t.Stop()
	for {
		select {
		case <-sp.stop:
			return
		case <-t.C:
		}
		sp.check()
		t.Reset(sp.wait())
	}
}

// maxWaits bounds wait: the watcher reads statfs at least every this many
// Intervals (1 s by default).
const maxWaits = 10

// wait is how long the watcher may go before its next reading. Reserve
// covers writes at up to Reserve per Interval between two readings, so
// free space above Low (the headroom) buys time in proportion: writes at
// that rate use up the headroom and then the Reserve no sooner than
// Interval x (1 + headroom / Reserve) after a reading, and leave Room as
// before. Near the mark, or full, it is Interval. A chat server's disk is
// far from full nearly always: most readings (each a statfs and a call to
// Pebble's Metrics, at 10 a second an idle server's largest cost) are not
// needed. Space taken by another process is seen up to maxWaits Intervals
// later; the ballast and the ENOSPC hook are the defence for that.
func (sp *Space) wait() time.Duration {
	head := sp.free.Load() - sp.low()
	if sp.full.Load() || head <= 0 || sp.reserve <= 0 {
		return sp.o.Interval
	}
	waits := 1 + float64(head)/float64(sp.reserve)
	return time.Duration(min(waits, maxWaits) * float64(sp.o.Interval))
}

// check reads statfs once and moves between the states.
func (sp *Space) check() {
	free, total, err := statfs(sp.dir)
	if err != nil {
		sp.log.Warn("storage: statfs", zap.Error(err))
		return
	}
	sp.free.Store(free)
	sp.total.Store(total)
	sp.room.Store(compactionRoom(sp.db.Metrics()))
	switch full := sp.full.Load(); {
	case !full && free < sp.low():
		sp.enter(free, "below reserve")
		sp.startReclaim()
	case full && free >= sp.resume():
		sp.makeBallast()
		sp.full.Store(false)
		sp.log.Warn("storage: space returned, accepting messages again", zap.Int64("free", free),
			zap.Int64("resume", sp.resume()), zap.Bool("ballast", sp.hasBallast.Load()))
	case full && time.Since(sp.reclaimAt) >= sp.o.ReclaimEvery:
		sp.startReclaim()
	}
}

// enter switches to the full state and releases the ballast.
func (sp *Space) enter(free int64, why string) {
	if sp.full.Swap(true) {
		return
	}
	sp.entered.Add(1)
	sp.releaseBallast()
	sp.log.Error("storage: disk nearly full, refusing new messages", zap.String("why", why),
		zap.Int64("free", free), zap.Int64("low", sp.low()), zap.Int64("resume", sp.resume()))
}

// startReclaim flushes the memtable (its tombstones included) and compacts
// the inbox and group-body ranges, on its own goroutine so that statfs
// readings go on meanwhile. At most one runs at a time.
func (sp *Space) startReclaim() {
	sp.reclaimAt = time.Now()
	if sp.db == nil {
		return
	}
	select {
	case sp.reclaim <- struct{}{}:
	default:
		return
	}
	sp.done.Add(1)
	go func() {
		defer sp.done.Done()
		defer func() { <-sp.reclaim }()
		sp.reclaimOnce()
	}()
}

func (sp *Space) reclaimOnce() {
	select {
	case <-sp.stop:
		return
	default:
	}
	if err := sp.db.Flush(); err != nil {
		sp.log.Warn("storage: flush while full", zap.Error(err))
		return
	}
	// A compaction writes its live output before deleting its inputs: only
	// start one whose output fits in what is free, less room for the WAL.
	// Table stats estimate the bytes tombstones will drop.
	m := sp.db.Metrics()
	var tables int64
	for _, l := range m.Levels {
		tables += l.TablesSize
	}
	garbage := int64(m.Table.Garbage.PointDeletionsBytesEstimate + m.Table.Garbage.RangeDeletionsBytesEstimate)
	live := max(tables-garbage, 0)
	free, _, err := statfs(sp.dir)
	if err != nil || garbage == 0 || live > free-2*sp.memtable {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-sp.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for _, p := range []byte{PrefixInbox, PrefixBody} {
		if err := sp.db.Compact(ctx, []byte{p}, []byte{p + 1}, false); err != nil && !errors.Is(err, context.Canceled) {
			sp.log.Warn("storage: compaction while full", zap.Error(err))
			return
		}
	}
}

// compactionRoom is the input size of the largest automatic compaction:
// L0 and the base level (the first non-empty level below it).
func compactionRoom(m *pebble.Metrics) int64 {
	room := m.Levels[0].TablesSize
	for _, l := range m.Levels[1:] {
		if l.TablesSize > 0 {
			return room + l.TablesSize
		}
	}
	return room
}

// makeBallast allocates the ballast file if there is room for it.
func (sp *Space) makeBallast() {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.ballastN == 0 || sp.hasBallast.Load() {
		return
	}
	free, _, err := statfs(sp.dir)
	if err != nil || free-sp.ballastN < sp.low()+sp.hyst-sp.ballastN {
		return
	}
	f, err := os.OpenFile(sp.ballast, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o600)
	if err == nil {
		// Fallocate reserves real blocks; a sparse file would free nothing.
		err = unix.Fallocate(int(f.Fd()), 0, 0, sp.ballastN)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		os.Remove(sp.ballast)
		sp.log.Warn("storage: ballast not created", zap.Error(err))
		return
	}
	sp.hasBallast.Store(true)
}

// releaseBallast deletes the ballast, freeing its blocks at once.
func (sp *Space) releaseBallast() {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if !sp.hasBallast.Load() {
		return
	}
	if err := os.Remove(sp.ballast); err != nil && !os.IsNotExist(err) {
		sp.log.Error("storage: ballast not released", zap.Error(err))
		return
	}
	sp.hasBallast.Store(false)
	sp.log.Warn("storage: ballast released", zap.Int64("bytes", sp.ballastN))
}

// diskFull runs inside Pebble's file system when a write meets ENOSPC,
// with every other write blocked: it must be quick and must not call
// into Pebble. Pebble retries the write once after it returns.
func (sp *Space) diskFull() {
	sp.emergencies.Add(1)
	sp.enter(0, "ENOSPC in the database")
}

// statfs returns the bytes available to this (unprivileged) process and
// the volume's size.
func statfs(dir string) (free, total int64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, fmt.Errorf("store: statfs %s: %w", dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), int64(st.Blocks) * int64(st.Bsize), nil
}
