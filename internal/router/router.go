package router

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatd/chatd/internal/offline"
	"go.uber.org/zap"
)

// Delivery keeps one rule: a connection receives its inbox in seq order,
// with at most Window entries and WindowBytes bytes of frames
// unacknowledged (the byte bound keeps a window of large messages below
// the outbound limit, past which the client would be closed as a slow
// consumer; an empty window always takes one entry, so any entry gets
// through). Two paths feed it:
//
//   - live: the inbox lane that applied a new entry pushes it at once, but
//     only if the session is caught up (no backlog) and the window has room;
//   - drain: after login and after each ACK, entries waiting in the inbox
//     are read from Pebble and pushed, until the session is caught up.
//
// A lane that finds the session behind records the entry's seq in
// lastStored and leaves it to the drain. The drain declares the session
// caught up only when it read past every seq a lane recorded, under the
// same lock (Session.mu) the lanes take after applying. So an entry is
// either pushed by its lane or seen by a drain: none is skipped, none is
// pushed twice (both check seq > pushed), and order holds across the
// offline to online switch.

// Conn is a connection's outbound queue as the Router uses it: Begin locks
// the queue and returns it (ok=false when closed), End stores the extended
// queue, unlocks it, and reports whether the connection needs a flush.
type Conn interface {
	comparable
	Begin() (buf []byte, ok bool)
	End(buf []byte) (first bool)
	// EndLazy is End for a frame that may wait a few milliseconds to
	// share a write with the connection's next frame (receipts): the
	// connection flushes it itself.
	EndLazy(buf []byte)
}

// Batch collects connections to flush once their producer's turn is done.
type Batch[C any] interface{ Add(c C) }

// Inbox is what the Router needs of the store-and-forward inboxes
// (offline.Inbox).
type Inbox interface {
	Read(user, after uint64, max int, fn func(*offline.Entry) bool) error
	// AckEntries settles acknowledged entries; push delivers what that
	// produces live (receipts of messages acknowledged live), as PushLive.
	// acked is the caller's again when it returns.
	AckEntries(user uint64, acked []offline.Acked, push func(*offline.Stored) bool) error
	Expiring(user, time uint64) bool
	// Cutoff is the time before which an entry may have expired: Applied
	// reads it once per batch and asks Expiring only about older entries.
	Cutoff() uint64
}

// ErrAckBeyond is Ack's answer to an ACK past the last pushed seq.
var ErrAckBeyond = errors.New("router: ACK beyond the last delivered seq")

// Config sizes a Router.
type Config[C any] struct {
	Window      int              // most unacknowledged entries per connection
	WindowBytes int              // most unacknowledged frame bytes per connection
	Session     func(C) *Session // the Session stored inline in c
	User        func(C) uint64   // c's user, set before Login
	Logger      *zap.Logger      // drain read errors
	// Delivered, if set, is told of every entry queued on a connection:
	// whether a drain sent it (else it was pushed live) and how long it
	// had waited since it was stored. Entries carry their store time in
	// unix milliseconds, so waits are good to a millisecond. It runs under
	// the session's lock, once per entry: it must be cheap.
	Delivered func(drained bool, waited time.Duration)
}

// Counters count per-entry events with atomics.
type Counters struct {
	Pushed       atomic.Uint64 // inbox entries written to a connection
	Backlogged   atomic.Int64  // sessions with entries not yet pushed
	InflightPeak atomic.Int64  // most unacknowledged delivery bytes one connection had
}

// Router routes inbox entries to live sessions. C is the connection type
// (a pointer); its Session lives inline in it.
type Router[C Conn] struct {
	*Table[C]

	// Static after New (inbox after Use).
	inbox       Inbox
	session     func(C) *Session
	user        func(C) uint64
	window      int
	windowBytes int
	log         *zap.Logger
	delivered   func(drained bool, waited time.Duration)

	// Safe for concurrent use.
	windows  windows   // rings lent to sessions with deliveries in flight
	acks     sync.Pool // *ackScratch[C], lent to Ack
	Counters Counters
}

// New returns a Router with an empty session table. Call Use before any
// session logs in.
func New[C Conn](cfg Config[C]) *Router[C] {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	r := &Router[C]{Table: NewTable[C](), session: cfg.Session, user: cfg.User,
		window: cfg.Window, windowBytes: cfg.WindowBytes, log: cfg.Logger, delivered: cfg.Delivered}
	r.windows.size = cfg.Window
	r.acks.New = func() any {
		a := &ackScratch[C]{r: r}
		a.push = a.pushLive
		return a
	}
	return r
}

// Use sets the inbox the Router reads and acknowledges. It must be called
// before any session logs in: the inbox calls Applied as soon as it is
// open, and Applied touches the inbox only for a live session.
func (r *Router[C]) Use(in Inbox) { r.inbox = in }

// Login makes c the user's live session, behind whatever waits in its
// inbox (Drain sends that, then the session is caught up), and returns the
// session it replaced, which the caller must close.
func (r *Router[C]) Login(user uint64, c C) (old C, replaced bool) {
	st := r.session(c)
	st.mu.Lock()
	if !st.closed { // a session closed before its login finished waits for nothing
		r.setBacklog(st, true)
	}
	st.mu.Unlock()
	return r.Swap(user, c)
}

// Closed releases c's delivery state; nothing is pushed or drained to it
// after. The caller removes c from the table first.
func (r *Router[C]) Closed(c C) {
	st := r.session(c)
	st.mu.Lock()
	st.closed = true
	r.setBacklog(st, false)
	if st.inflight != nil {
		r.windows.put(st.inflight)
		st.inflight = nil
	}
	st.mu.Unlock()
}

// Applied pushes new inbox entries to recipients that are online, caught
// up and have room in their window; the others drain them later. It runs
// on an inbox lane (offline.Hooks.Applied).
func (r *Router[C]) Applied(entries []*offline.Stored, b Batch[C]) {
	cutoff := r.inbox.Cutoff() // one clock read per batch, not per entry
	now := r.now()
	for _, e := range entries {
		c, ok := r.Lookup(e.To)
		if !ok {
			continue
		}
		st := r.session(c)
		st.mu.Lock()
		r.appliedLocked(c, st, e, b, cutoff, now)
		st.mu.Unlock()
	}
}

// appliedLocked pushes e, or leaves it to the drain. st.mu must be held.
func (r *Router[C]) appliedLocked(c C, st *Session, e *offline.Stored, b Batch[C], cutoff uint64, now int64) {
	if e.Seq > st.lastStored {
		st.lastStored = e.Seq
	}
	if e.Seq > st.pushed && !st.closed && (e.Time >= cutoff || !r.inbox.Expiring(e.To, e.Time)) { // an expired entry is never pushed: its expiry settles it
		if st.backlog || !r.push(c, st, b, e, now, false) {
			r.setBacklog(st, true)
		}
	}
}

// Behind marks c's session as behind its inbox and forgets which seq it
// last heard of: a session whose inbox is on another node calls it before
// it attaches there (again), since the home then numbers its pushes from
// scratch (AppliedFrom's prev starts at 0). Until the drain catches up,
// pushes only record their seq.
func (r *Router[C]) Behind(c C) {
	st := r.session(c)
	st.mu.Lock()
	st.lastStored = 0
	st.behinds++ // a drain reading now may have missed what the home took meanwhile
	if !st.closed {
		r.setBacklog(st, true)
	}
	st.mu.Unlock()
}

// AppliedFrom is Applied for new entries of one user whose inbox lives on
// another node (in a cluster), which pushed them: prev is the seq that
// node pushed to this session before them (0 for none). Pushes between
// nodes may be lost; a session that never heard of prev missed one, is
// marked behind, and AppliedFrom reports that the caller must drain it
// (the drain reads the home's inbox, so nothing is skipped).
func (r *Router[C]) AppliedFrom(user, prev uint64, entries []*offline.Stored, b Batch[C]) (drain bool) {
	c, ok := r.Lookup(user)
	if !ok {
		return false
	}
	st := r.session(c)
	st.mu.Lock()
	defer st.mu.Unlock()
	if prev > st.lastStored {
		st.lastStored = prev
		r.setBacklog(st, true)
	}
	now := r.now()
	for _, e := range entries {
		r.appliedLocked(c, st, e, b, 0, now)
	}
	return st.backlog && !st.closed
}

// setBacklog records whether st has entries waiting to be pushed, keeping
// the drain-lag gauge. st.mu must be held.
func (r *Router[C]) setBacklog(st *Session, on bool) {
	if st.backlog == on {
		return
	}
	st.backlog = on
	if on {
		r.Counters.Backlogged.Add(1)
	} else {
		r.Counters.Backlogged.Add(-1)
	}
}

// fits reports whether an entry whose frame is size bytes may join st's
// window now. An empty window takes any entry. st.mu must be held.
func (r *Router[C]) fits(st *Session, size int) bool {
	n := st.inflightLen()
	return n == 0 || (n < r.window && st.inflightBytes()+size <= r.windowBytes)
}

// now reads the wall clock (unix ns) for Delivered, once per batch of
// entries; 0 when nobody measures.
func (r *Router[C]) now() int64 {
	if r.delivered == nil {
		return 0
	}
	return time.Now().UnixNano()
}

// push queues the new entry e on c if the window has room for it and
// reports whether it did. A live entry (not stored: PushLiveTo) is marked
// so in the window, and a closed connection did not take it; a stored one
// needs nothing held back for a closed connection, so push reports true.
// st.mu must be held.
func (r *Router[C]) push(c C, st *Session, b Batch[C], e *offline.Stored, now int64, live bool) bool {
	if st.inflightLen() >= r.window {
		return false
	}
	buf, ok := c.Begin()
	if !ok {
		return !live // closed: nothing to push to, nothing to hold back
	}
	n := len(buf)
	buf = e.AppendFrame(buf)
	if !r.fits(st, len(buf)-n) {
		c.End(buf[:n]) // the window is full of bytes: the drain sends it after an ACK
		return false
	}
	a := e.Acked()
	a.Live = live
	// A receipt pushed live is lazy only when stored: live, it is the
	// delivered receipt of a message acknowledged live, and its SENT
	// follows on this turn, so it leaves in b's write, not the lazy
	// flusher's (which woke a thread a millisecond to find it gone).
	r.pushedLocked(c, st, b, a, buf, len(buf)-n, e.Kind == offline.KindReceipt && !live, now, false)
	return true
}

// pushedLocked finishes queueing inbox entry e on c: buf is c's queue
// from Begin with the entry's frame (size bytes) appended. A lazy entry
// (a stored receipt pushed to an online sender: a tick on the sender's
// screen) is not flushed by
// b; it rides with the connection's next SENT or DELIVER, or goes within
// the connection's lazy delay. A drain is never lazy: the client waits for
// its backlog, window by window. now (unix ns; 0: not measured) and
// drained are for Delivered. st.mu must be held.
func (r *Router[C]) pushedLocked(c C, st *Session, b Batch[C], e offline.Acked, buf []byte, size int, lazy bool, now int64, drained bool) {
	switch {
	case lazy:
		c.EndLazy(buf)
	case c.End(buf):
		b.Add(c)
	}
	if st.inflight == nil {
		st.inflight = r.windows.get()
	}
	st.inflight.push(e, size)
	st.pushed = e.Seq
	r.Counters.Pushed.Add(1)
	if r.delivered != nil && now != 0 {
		r.delivered(drained, time.Duration(now-int64(e.Time)*int64(time.Millisecond)))
	}
	for n := int64(st.inflight.bytes); ; {
		peak := r.Counters.InflightPeak.Load()
		if n <= peak || r.Counters.InflightPeak.CompareAndSwap(peak, n) {
			break
		}
	}
}

// drainBuf is a drain's scratch: the frames it read, their entries and
// where each frame ends. Pooled, because a drain runs at every login and
// its scratch, left behind each time, cost CPU and left holes among the
// sessions' long-lived objects.
type drainBuf struct {
	frames []byte
	ents   []offline.Acked
	ends   []int // where each entry's frame ends in frames
	full   bool  // the window's bytes ran out before the inbox did
}

var drainBufs = sync.Pool{New: func() any { return new(drainBuf) }}

// put returns d to the pool unless a big read grew it (Drain empties it
// before each read).
func (d *drainBuf) put() {
	if cap(d.frames) <= 64<<10 && cap(d.ents) <= 1024 {
		drainBufs.Put(d)
	}
}

// Drain pushes inbox entries that wait for c, window permitting. It runs
// on c's event-loop turn (after login and after ACK).
func (r *Router[C]) Drain(c C, b Batch[C]) {
	st := r.session(c)
	user := r.user(c)
	d := drainBufs.Get().(*drainBuf)
	defer d.put()
	for {
		st.mu.Lock()
		room := r.window - st.inflightLen()
		byteRoom := r.windowBytes - st.inflightBytes()
		empty := st.inflightLen() == 0
		from, stored, behinds := st.pushed, st.lastStored, st.behinds
		if !st.backlog || room <= 0 || byteRoom <= 0 && !empty || st.closed {
			st.mu.Unlock()
			return
		}
		st.mu.Unlock()

		// Read what fits in the window's entries and bytes; full says the
		// bytes ran out before the inbox did.
		d.frames, d.ents, d.ends, d.full = d.frames[:0], d.ents[:0], d.ends[:0], false
		err := r.inbox.Read(user, from, room, func(e *offline.Entry) bool {
			n := len(d.frames)
			d.frames = e.AppendFrame(d.frames)
			if len(d.frames) > byteRoom && !(empty && n == 0) {
				d.frames, d.full = d.frames[:n], true
				return false
			}
			d.ents = append(d.ents, e.Acked())
			d.ends = append(d.ends, len(d.frames))
			return true
		})
		frames, ents, ends, full := d.frames, d.ents, d.ends, d.full
		if err != nil {
			r.log.Error("drain: read inbox", zap.Uint64("user", user), zap.Error(err))
			return
		}

		now := r.now()
		st.mu.Lock()
		start := 0
		for i, e := range ents {
			size := ends[i] - start
			if e.Seq > st.pushed {
				if !r.fits(st, size) {
					full = true
					break
				}
				buf, ok := c.Begin()
				if !ok {
					// Closing: nothing more can be pushed, and reading on
					// would spin (pushed no longer moves) until Closed
					// runs, which waits for this turn to end.
					st.mu.Unlock()
					return
				}
				r.pushedLocked(c, st, b, e, append(buf, frames[start:ends[i]]...), size, false, now, true)
			}
			start = ends[i]
		}
		// Fewer than asked means the read reached the end of the inbox as
		// it was when the read began. Every entry a lane recorded before
		// that (lastStored as read above) was applied before it: read now,
		// or gone (expired). A lane that recorded a later entry since then
		// changed lastStored, and the loop reads again. A window full of
		// bytes waits for an ACK, which drains again.
		if full {
			st.mu.Unlock()
			return
		}
		// A Behind during the read zeroed lastStored, which says nothing
		// then: the home numbers its pushes from 0 again, so entries it took
		// after the read began may show in no push. Read again.
		caughtUp := len(ents) < room && st.behinds == behinds &&
			(st.lastStored <= st.pushed || st.lastStored == stored)
		if caughtUp {
			r.setBacklog(st, false)
		}
		st.mu.Unlock()
		if caughtUp {
			return
		}
	}
}

// PushLive pushes e, an entry not stored yet (offline.Inbox.Deliver), to
// its owner's session if that is here, caught up and has room for it in
// its window, and reports whether it did. The session then holds it as
// Live: its ACK goes to the inbox like any other, which knows it is not
// stored. A receipt is flushed with b, not lazily as Applied pushes
// stored receipts: its message's SENT follows on the same turn.
func (r *Router[C]) PushLive(e *offline.Stored, b Batch[C]) bool {
	c, ok := r.Lookup(e.To)
	return ok && r.PushLiveTo(c, e, b)
}

// PushLiveTo is PushLive to c, the session its caller looked up for e.To
// (a session closed or replaced since then takes nothing).
func (r *Router[C]) PushLiveTo(c C, e *offline.Stored, b Batch[C]) bool {
	st := r.session(c)
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed || st.backlog || e.Seq <= st.pushed {
		return false
	}
	// now 0: Delivered measures the wait from store to push, and a live
	// entry was never stored (the SEND-to-SENT histogram times it).
	return r.push(c, st, b, e, 0, true)
}

// Ack takes the entries up to seq out of c's window and out of the inbox
// (which queues their delivered receipts, or pushes them live into b),
// and reports whether entries wait for the room it made: the caller then
// calls Drain. An ACK at or below an earlier one does nothing; one beyond
// the last pushed seq is ErrAckBeyond. It runs on c's event-loop turn.
func (r *Router[C]) Ack(c C, seq uint64, b Batch[C]) (drain bool, err error) {
	st := r.session(c)
	st.mu.Lock()
	if seq > st.pushed {
		st.mu.Unlock()
		return false, ErrAckBeyond
	}
	if seq <= st.acked {
		st.mu.Unlock()
		return false, nil
	}
	st.acked = seq
	a := r.acks.Get().(*ackScratch[C])
	acked := a.acked[:0]
	if st.inflight != nil {
		acked = st.inflight.popThrough(seq, acked)
		if st.inflight.len() == 0 {
			r.windows.put(st.inflight)
			st.inflight = nil
		}
	}
	backlog := st.backlog
	st.mu.Unlock()
	a.b = b
	if err := r.inbox.AckEntries(r.user(c), acked, a.push); err != nil {
		r.log.Debug("ack not recorded", zap.Error(err))
	}
	a.b = nil
	if a.acked = acked[:0]; cap(acked) > 1024 {
		a.acked = nil // an ACK of a whole backlog: not worth keeping
	}
	r.acks.Put(a)
	return backlog, nil
}

// ackScratch is what Ack lends itself from a pool, one Get per ACK: the
// list of entries the ACK covers, and the push function it gives the
// inbox (PushLive into the ACK's batch). Each was an allocation per
// message: the list, and a closure made per ACK, which escapes through
// the Inbox interface; the method value here is made once.
type ackScratch[C Conn] struct {
	r     *Router[C]
	b     Batch[C]
	push  func(*offline.Stored) bool // a.pushLive
	acked []offline.Acked
}

func (a *ackScratch[C]) pushLive(e *offline.Stored) bool { return a.r.PushLive(e, a.b) }
