package offline

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatd/chatd/internal/store"
	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/zap"
)

// Hooks are how the inbox tells the server about its writes. Both run on
// lane goroutines and must not block.
type Hooks[S any] interface {
	// Applied: the entries are visible in their inboxes (not yet durable).
	// Push them to online recipients now. The slice and entries are valid
	// only during the call.
	Applied(entries []*Stored)
	// Durable: the messages are on disk, or failed (their Err): answer
	// their senders. others are the receipts and group events (a group
	// event once, when every member's entry is) that became durable or
	// failed with them.
	Durable(msgs []*Message[S], others []Done)
	// LiveAcked: the messages, delivered live (Deliver), were acknowledged
	// by their recipients before they were stored: answer their senders
	// (their Seq and Time are set; Err is nil). It runs on the
	// acknowledging caller's goroutine and must not block. The messages
	// are recycled when it returns (NewMessage), and so is the slice: keep
	// nothing of them.
	LiveAcked(msgs []*Message[S])
}

// Config tunes the inbox. A zero field means its default.
type Config struct {
	// Lanes is the number of commit lanes. Default 4 per core.
	Lanes int
	// MaxQueued is how many ops may wait in one lane before Submit refuses
	// with ErrBusy (the disk is not keeping up). Default 65536.
	MaxQueued int
	// TTL is how long an unacknowledged entry is kept. Default 30 days.
	TTL time.Duration
	// Quota is the most entries one inbox may hold; a message to a full
	// inbox fails with ErrInboxFull. Default 10,000.
	Quota int
	// QuotaBytes is the most bytes one inbox's entries may hold (their
	// stored values: header, ids, body); a message that would take an
	// inbox past it fails with ErrInboxBytesFull. Receipts, group events
	// and group messages count but are never refused, as for Quota.
	// Default 64 MiB.
	QuotaBytes int64
	// DedupFilter is the size in bytes of each day's filter of the message
	// ids in the dedup window (three days' are kept), which spares a new
	// message the Pebble lookups. About 7 bits per message a day keeps
	// one new message in 20 looked up. Default 8 MiB.
	DedupFilter int
	// SweepEvery is how often expired entries are looked for (and deleted,
	// with expired receipts to their senders). Expired entries are never
	// delivered, whatever the period. Default 1 minute, or TTL/2 if shorter.
	SweepEvery time.Duration
	// LazyOps is the longest an op nobody waits for (deleting entries
	// whose receipts are durable) waits to share the lane's next batch.
	// Default 100 ms.
	LazyOps time.Duration
	// LiveWait is how long a message delivered live (Deliver) waits in
	// memory for its recipient's ACK before it is stored. Default 250 ms;
	// negative turns live delivery off (every message is stored first).
	LiveWait time.Duration
	Logger   *zap.Logger
	// SyncFault, for tests, runs after each batch's sync; an error it
	// returns counts as a failed sync of a batch already applied.
	SyncFault func() error
	// Synced, if set, is told how long each batch took from its commit
	// (the apply that starts its sync) to durable (the sync's end, failed
	// or not), as its lane's syncer sees it: the fsync latency a SENT
	// waits for. It runs on the syncer and must not block.
	Synced func(time.Duration)
	// Gone, when set, reports that user's account is deleted (or being
	// deleted): receipts for it are dropped instead of stored, since no
	// one will ever read them (Purge empties what it had).
	Gone func(user uint64) bool
	// Remote, in a cluster, reports that user's inbox lives on another
	// node; Forward then takes the receipts for that user (delivered,
	// read, expired) instead of a local lane, and calls done once the
	// receipt is durable at its home. Forward must not block; it keeps
	// trying until the home has it (done is never called otherwise: the
	// acknowledged entries then stay until a restart delivers them again).
	// Both nil on a single node.
	Remote  func(user uint64) bool
	Forward func(r Receipt, done func())
	// FanOut, in a cluster, takes a group message or event for members
	// homed on other nodes once its outbox record is durable, in the
	// group's order (outbox.go). It must not block. Nil: every member is
	// stored here.
	FanOut func(FanOut)
}

// ErrBusy means a lane's queue is full: the store is not keeping up.
var ErrBusy = errors.New("offline: inbox store is saturated")

// ErrClosed is returned by Submit after Close.
var ErrClosed = errors.New("offline: inbox closed")

// ErrDuplicateID fails a message whose id its sender used, within the
// dedup window, for another recipient or body.
var ErrDuplicateID = errors.New("offline: message id already used for another recipient or body")

// ErrInboxFull fails a message to an inbox at its quota.
var ErrInboxFull = errors.New("offline: recipient inbox full")

// ErrInboxBytesFull fails a message that would take an inbox past its
// byte quota (Config.QuotaBytes).
var ErrInboxBytesFull = errors.New("offline: recipient inbox byte quota reached")

// Inbox is the set of all inboxes. S is the type of a message sender's
// handle (Message.Sender).
type Inbox[S any] struct {
	env   env
	cfg   Config
	hooks Hooks[S]
	seq   *seqAlloc
	lanes []*lane[S]
	wg    sync.WaitGroup
	now   func() time.Time

	stop    chan struct{}
	sweeps  sync.WaitGroup
	expired atomic.Uint64 // entries deleted unacknowledged after TTL
	commits atomic.Uint64 // lane batches applied
	records atomic.Uint64 // Pebble records (sets and deletes) in them
	entries atomic.Int64  // entries in all inboxes: counted at start, then tracked
	counted chan struct{} // closed when the lanes have the start-up count
	seen    *seen         // the dedup window's (sender, id) pairs
	live    struct{ pushed, acked, stored atomic.Uint64 }
	msgPool sync.Pool // *Message[S] acknowledged live (live.go)
	opPool  sync.Pool // *op[S]: delivered receipts pushed live
	ackBufs sync.Pool // *[]*Message[S]: ackLive's list for Hooks.LiveAcked

	// The live timer stores held entries whose wait is over (live.go).
	// liveMu is a leaf, taken under a lane's mu.
	liveMu    sync.Mutex
	liveArmed bool // liveTimer will fire
	liveTimer *time.Timer
}

// beforeCount, when set (tests), runs before the start-up count.
var beforeCount func()

// Work returns how many batches the lanes applied and how many Pebble
// records (sets and deletes) they held: per message, the store's share of
// the work (BENCHMARKS.md).
func (in *Inbox[S]) Work() (commits, records uint64) { return in.commits.Load(), in.records.Load() }

// Entries returns how many entries the inboxes hold (approximate while the
// count taken at start is still running).
func (in *Inbox[S]) Entries() int64 { return in.entries.Load() }

// countEntries counts every inbox's entries and their bytes as they were
// when the inbox opened (it is the iterator's snapshot, taken before any
// lane ran) and hands each lane the counts of its users. Lanes track every
// change since start themselves, so snapshot plus changes is exact, and
// both survive a crash or kill -9 by being counted again. It reads keys
// and value lengths, not values.
func (in *Inbox[S]) countEntries(it iterator, before func()) {
	defer in.sweeps.Done()
	defer it.Close()
	if before != nil {
		before()
	}
	counts := make([]map[uint64]tally, len(in.lanes))
	for i := range counts {
		counts[i] = map[uint64]tally{}
	}
	var total int64
	var user uint64
	var t tally
	flush := func() {
		if t.n > 0 {
			c := counts[in.laneIndex(user)]
			c[user] = c[user].add(t)
		}
	}
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		if len(k) != 17 {
			continue
		}
		if u := binary.BigEndian.Uint64(k[1:]); u != user || t.n == 0 {
			flush()
			user, t = u, tally{}
		}
		t.n++
		t.bytes += int64(it.ValueLen())
		if total++; total%65536 == 0 {
			select {
			case <-in.stop:
				return // closing: the lanes stop too
			default:
			}
		}
	}
	flush()
	if err := it.Error(); err != nil {
		// The lanes stay conservative: they count an inbox when they must.
		in.cfg.Logger.Error("counting inbox entries", zap.Error(err))
		return
	}
	in.entries.Add(total)
	for i, l := range in.lanes {
		l.mu.Lock()
		l.counts, l.countsReady = counts[i], true
		l.mu.Unlock()
		l.kick()
	}
	close(in.counted)
}

// Open starts the inbox's lanes on db.
func Open[S any](db *pebble.DB, cfg Config, hooks Hooks[S]) (*Inbox[S], error) {
	return openEnv[S](pebbleEnv{db}, cfg, hooks)
}

// openEnv starts the inbox's lanes on e.
func openEnv[S any](e env, cfg Config, hooks Hooks[S]) (*Inbox[S], error) {
	if cfg.Lanes == 0 {
		cfg.Lanes = 4 * runtime.GOMAXPROCS(0)
	}
	if cfg.MaxQueued == 0 {
		cfg.MaxQueued = 65536
	}
	if cfg.TTL == 0 {
		cfg.TTL = 30 * 24 * time.Hour
	}
	if cfg.Quota == 0 {
		cfg.Quota = 10000
	}
	if cfg.QuotaBytes == 0 {
		cfg.QuotaBytes = 64 << 20
	}
	if cfg.SweepEvery == 0 {
		// A short TTL sweeps more often: senders of unread messages hear
		// of the expiry within about half a TTL.
		cfg.SweepEvery = min(time.Minute, max(cfg.TTL/2, 10*time.Millisecond))
	}
	if cfg.LazyOps == 0 {
		cfg.LazyOps = 100 * time.Millisecond
	}
	if cfg.LiveWait == 0 {
		cfg.LiveWait = 250 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.DedupFilter == 0 {
		cfg.DedupFilter = 8 << 20
	}
	seq, err := newSeqAlloc(e)
	if err != nil {
		return nil, err
	}
	// The count's snapshot is taken before any lane can write.
	count, err := e.NewIter([]byte{store.PrefixInbox}, []byte{store.PrefixInbox + 1})
	if err != nil {
		return nil, fmt.Errorf("offline: count inbox entries: %w", err)
	}
	today := uint32(time.Now().UnixMilli() / 86_400_000)
	window, err := e.NewIter(dedupWindowStart(today), []byte{store.PrefixDedup + 1})
	if err != nil {
		count.Close()
		return nil, fmt.Errorf("offline: load dedup window: %w", err)
	}
	in := &Inbox[S]{env: e, cfg: cfg, hooks: hooks, seq: seq, now: time.Now, stop: make(chan struct{}), counted: make(chan struct{}),
		seen: newSeen(cfg.DedupFilter)}
	in.liveTimer = time.AfterFunc(time.Hour, in.liveFired)
	in.liveTimer.Stop()
	for i := 0; i < cfg.Lanes; i++ {
		l := &lane[S]{in: in, wake: make(chan struct{}, 1), syncq: make(chan *syncJob[S], 16), depth: map[uint64]tally{},
			pending: map[uint64]int32{}}
		l.lazyTimer = time.AfterFunc(time.Hour, l.lazyFired)
		l.lazyTimer.Stop()
		l.readsTimer = time.AfterFunc(time.Hour, l.readsFired)
		l.readsTimer.Stop()
		l.readsSlot = time.Duration(i) * readLogDelay / time.Duration(cfg.Lanes)
		in.lanes = append(in.lanes, l)
		in.wg.Add(2)
		go l.run()
		go l.syncer()
	}
	in.sweeps.Add(3)
	go in.sweep()
	go in.countEntries(count, beforeCount)
	go in.loadSeen(window, today)
	return in, nil
}

// Close stops accepting ops, finishes every queued one (they become
// durable and their hooks run) and stops the lanes.
func (in *Inbox[S]) Close() {
	close(in.stop)
	in.sweeps.Wait()
	for _, l := range in.lanes {
		l.add(&op[S]{kind: kindLogRead}, true) // the last batch writes the buffered read log
		l.mu.Lock()
		l.readsTimer.Stop()
		l.closed = true
		l.lazyTimer.Stop()
		l.mu.Unlock() // held entries go: their senders have no SENT and resend
		l.kick()
	}
	in.liveMu.Lock()
	in.liveTimer.Stop()
	in.liveMu.Unlock()
	in.wg.Wait()
}

func (in *Inbox[S]) lane(user uint64) *lane[S] { return in.lanes[in.laneIndex(user)] }

func (in *Inbox[S]) laneIndex(user uint64) uint64 {
	return (user * 0x9E3779B97F4A7C15 >> 32) % uint64(len(in.lanes))
}

// Submit queues m for its recipient's inbox. Hooks.Durable gets m back.
func (in *Inbox[S]) Submit(m *Message[S]) error {
	m.setOp()
	return in.lane(m.To).add(&m.op, false)
}

// setOp makes m's op the entry that stores it for m.To (Submit, Deliver).
func (m *Message[S]) setOp() {
	m.op = op[S]{kind: KindMessage, msg: m, st: Stored{To: m.To, Entry: Entry{Kind: KindMessage, Time: m.Time,
		ID: m.ID, From: m.From, Group: m.Group, Body: m.Body}}}
}

// SubmitGroup queues a group message for members, m.Group naming the
// group. Its body is stored once; each member gets a small entry
// referring to it. Messages and events of one group are fanned out in the
// order they are submitted, so every member sees the same order.
// Hooks.Durable gets m back once: when every member's entry is on disk
// (or with m.Err).
func (in *Inbox[S]) SubmitGroup(m *Message[S], members []uint64) error {
	m.op = op[S]{kind: kindGroupFanout, msg: m, members: members, st: Stored{Entry: Entry{Kind: KindMessage,
		Time: m.Time, ID: m.ID, From: m.From, Group: m.Group, Body: m.Body}}}
	return in.lane(m.Group).add(&m.op, false)
}

// SubmitGroupEvent queues ev for members, in order with the group's
// messages (see SubmitGroup).
func (in *Inbox[S]) SubmitGroupEvent(ev GroupEvent, members []uint64) error {
	o := &op[S]{kind: kindGroupFanout, members: members, st: Stored{Entry: Entry{Kind: KindGroupEvent, Time: ev.Time,
		Group: ev.Group, EventKind: ev.Kind, Actor: ev.Actor, Name: ev.Name, Users: ev.Users}}}
	return in.lane(ev.Group).add(o, false)
}

// SubmitReceipt queues r for the inbox of the messages' sender (r.To).
func (in *Inbox[S]) SubmitReceipt(r Receipt) error {
	return in.lane(r.To).add(receiptOp[S](r), false)
}

// SubmitReceiptThen is SubmitReceipt with done called once r is
// durable, with nil, or with the error that kept it from being stored
// (the home of a forwarded receipt answers with it).
func (in *Inbox[S]) SubmitReceiptThen(r Receipt, done func(error)) error {
	o := receiptOp[S](r)
	o.done = func(o *op[S]) { done(o.err) }
	return in.lane(r.To).add(o, false)
}

// addReceipt queues a receipt op made by a lane (settle, a READ) in its
// recipient's lane, or forwards it when that inbox lives on another node.
func (in *Inbox[S]) addReceipt(r *op[S]) error {
	if in.cfg.Gone != nil && in.cfg.Gone(r.st.To) {
		if r.done != nil {
			r.done(r) // as if stored: the acknowledged entries may go
		}
		return nil
	}
	if in.cfg.Remote == nil || !in.cfg.Remote(r.st.To) {
		return in.lane(r.st.To).add(r, true)
	}
	e := &r.st.Entry
	in.cfg.Forward(Receipt{To: r.st.To, Kind: e.ReceiptKind, By: e.By, Group: e.Group, IDs: e.IDs, Time: e.Time}, func() {
		if r.done != nil {
			r.done(r)
		}
	})
	return nil
}

func receiptOp[S any](r Receipt) *op[S] {
	o := new(op[S])
	o.setReceipt(r)
	return o
}

// setReceipt makes o the entry of receipt r; o's other fields are left.
func (o *op[S]) setReceipt(r Receipt) {
	o.kind = KindReceipt
	o.st = Stored{To: r.To, Entry: Entry{Kind: KindReceipt, Time: r.Time, ReceiptKind: r.Kind, By: r.By, Group: r.Group, IDs: r.IDs}}
}

// Ack records that user acknowledged every entry in (from, to]: delivered
// receipts go to the senders of the messages among them, then the entries
// are deleted.
func (in *Inbox[S]) Ack(user, from, to uint64) error {
	if to <= from {
		return nil
	}
	return in.lane(user).add(&op[S]{kind: kindAck, st: Stored{To: user}, ackFrom: from, ackTo: to}, true)
}

// AckEntries is Ack for callers that know what they delivered: the
// entries are deleted and the receipts sent without reading the inbox.
// Entries pushed live (Acked.Live) leave memory instead (live.go); push
// delivers their receipts live, as for Deliver. acked is the caller's
// again when AckEntries returns.
func (in *Inbox[S]) AckEntries(user uint64, acked []Acked, push func(*Stored) bool) error {
	for _, a := range acked {
		if a.Live {
			acked = in.ackLive(user, acked, push)
			break
		}
	}
	if len(acked) == 0 {
		return nil
	}
	return in.lane(user).add(&op[S]{kind: kindAck, st: Stored{To: user}, acked: slices.Clone(acked)}, true)
}

// readEntries lends Read its Entry.
var readEntries = sync.Pool{New: func() any { return new(Entry) }}

// Read calls fn for user's entries with seq > after, in seq order, until fn
// returns false or max entries were read. The Entry and its slices are
// valid only during fn.
func (in *Inbox[S]) Read(user, after uint64, max int, fn func(*Entry) bool) error {
	prefix := inboxPrefix(user)
	lo := inboxKey(nil, user, after+1)
	if after == ^uint64(0) {
		return nil
	}
	it, err := in.env.NewIter(lo, store.PrefixEnd(prefix))
	if err != nil {
		return fmt.Errorf("offline: read inbox %d: %w", user, err)
	}
	defer it.Close()
	// fn gets a pooled Entry, valid only during the call (it is reused for
	// the next entry anyway): a drain runs at every login, and a 200-byte
	// Entry left behind by each one shares its size class with the
	// connection's Conn, so a login storm left the Conns' spans half empty
	// (about 200 B of RSS per idle connection).
	e := readEntries.Get().(*Entry)
	defer func() { *e = Entry{}; readEntries.Put(e) }()
	n := 0
	cutoff, expiring := in.Cutoff(), false
	for it.First(); it.Valid() && n < max; it.Next() {
		k := it.Key()
		seq := binary.BigEndian.Uint64(k[9:])
		v, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("offline: read inbox %d: %w", user, err)
		}
		if len(v) >= entryHeader {
			if t := binary.BigEndian.Uint64(v[2:]); t < cutoff {
				// Expired: never delivered. One expiry per read settles it.
				if !expiring {
					expiring = in.Expiring(user, t)
				}
				continue
			}
		}
		if err := DecodeEntry(seq, v, e); err != nil {
			in.cfg.Logger.Error("skipping corrupt inbox entry", zap.Uint64("user", user), zap.Uint64("seq", seq), zap.Error(err))
			continue
		}
		var closer io.Closer
		if e.Kind == KindGroupMessage {
			body, c, err := in.env.Get(bodyKey(e.Ref, 0))
			if err != nil {
				continue // expired with its hour
			}
			e.Body, closer = body[entryHeader+32:], c
		}
		n++
		more := fn(e)
		if closer != nil {
			closer.Close()
		}
		if !more {
			break
		}
	}
	return it.Error()
}

// Count returns the number of entries in user's inbox (tests, metrics).
func (in *Inbox[S]) Count(user uint64) (int, error) {
	n := 0
	err := in.Read(user, 0, int(^uint(0)>>1), func(*Entry) bool { n++; return true })
	return n, err
}

// countInbox counts user's entries and their bytes, up to max entries,
// from keys and value lengths. An error counts as full.
func (in *Inbox[S]) countInbox(user uint64, max int32) tally {
	full := tally{n: max, bytes: in.cfg.QuotaBytes}
	prefix := inboxPrefix(user)
	it, err := in.env.NewIter(prefix, store.PrefixEnd(prefix))
	if err != nil {
		return full // unknown: take it for full
	}
	var t tally
	for it.First(); it.Valid() && t.n < max; it.Next() {
		t.n++
		t.bytes += int64(it.ValueLen())
	}
	if errors.Join(it.Error(), it.Close()) != nil {
		return full
	}
	return t
}
