package offline

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/store"
	"go.uber.org/zap"
)

// lane owns the inboxes that hash to it; see the package comment.
type lane[S any] struct {
	in    *Inbox[S]
	wake  chan struct{}
	syncq chan *syncJob[S]

	mu          sync.Mutex
	queue       []*op[S]
	lazyOnly    bool        // queue holds only lazy ops: nobody kicked the lane for them
	lazyArmed   bool        // lazyTimer runs for the queue's lazy ops
	lazyTimer   *time.Timer // kicks the lane LazyOps after the first lazy op
	closed      bool
	counts      map[uint64]tally // from countEntries, taken by run
	countsReady bool
	// pending counts each inbox's entry ops queued or being committed
	// (until Applied ran for them): live delivery waits while any are, so
	// that seqs reach a connection in order.
	pending    map[uint64]int32
	held       map[entryRef]*op[S] // messages pushed live, not yet acknowledged (live.go)
	liveMsgs   liveQueue[S]        // held messages, by when they fall due (Inbox.liveTimer stores them)
	reads      []readLog           // read-log entries of messages acknowledged live, not yet written (live.go)
	readsArmed bool
	readsTimer *time.Timer
	readsSlot  time.Duration // when in each readLogDelay this lane writes its buffer (live.go)
	readsSpare []readLog     // the buffer's other slice: turn swaps the two, commit hands back the written one

	// Owned by run.
	visible  []*Stored
	fanouts  []*op[S]
	released map[BodyRef]uint32
	// depth is the number of entries and bytes of each of the lane's
	// inboxes. Until the start-up count arrives (counted), it holds only
	// the changes since start, and quota checks count the inbox instead
	// (early).
	depth   map[uint64]tally
	counted bool
	early   map[uint64]tally // before counted: entries per inbox in this batch
	// settling holds the entries an ack or an expiry is deleting: queued
	// for deletion once their receipts are durable, or deleted in this
	// batch (dropped from the set after the commit). Neither an ack nor an
	// expiry settles an entry twice, so each gets one receipt, and a
	// depth drops once per entry.
	settling map[entryRef]bool   // true: deleted in this batch
	deleted  []entryRef          // this batch's deletes, dropped from settling after it applies
	expiring map[uint64]bool     // users expired in this batch
	batchIDs map[senderID]*op[S] // this batch's messages, for the dedup rule
	xcache   [4096]xslot         // expiry index keys written recently
	readRecs []readRec           // read-log records this batch wrote or changed
	readIDs  codec.IDList        // writeReads' scratch
	commits  int
	key      []byte
	val      []byte
}

// senderID is a message's dedup key.
type senderID struct {
	from uint64
	id   codec.MsgID
}

// entryRef names one inbox entry.
type entryRef struct{ user, seq uint64 }

func refOf(key []byte) entryRef {
	return entryRef{binary.BigEndian.Uint64(key[1:]), binary.BigEndian.Uint64(key[9:])}
}

// xslot remembers that the expiry index has the key (hour, user), so the
// common case (many entries for one user within an hour) writes it once.
type xslot struct {
	user uint64
	hour uint32
}

type syncJob[S any] struct {
	b       batch
	ops     []*op[S]
	applied time.Time // before the apply: zero unless Config.Synced is set
}

// maxBatch bounds one batch so that a burst does not hold pushes back for
// long; what is left waits for the next turn.
const maxBatch = 4096

// add queues o and kicks the lane if nobody has kicked it for what is
// queued (it was empty, or held only lazy ops). Internal ops are never
// refused for a full queue: they finish work already accepted.
func (l *lane[S]) add(o *op[S], internal bool) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	if !internal && len(l.queue) >= l.in.cfg.MaxQueued {
		l.mu.Unlock()
		return ErrBusy
	}
	l.queue = append(l.queue, o)
	if o.kind < kindAck {
		l.pending[o.st.To]++
	}
	first := len(l.queue) == 1 || l.lazyOnly
	l.lazyOnly = false
	l.mu.Unlock()
	if first {
		l.kick()
	}
	return nil
}

// lazyFired runs when the lazy timer fires: the lazy ops go alone.
func (l *lane[S]) lazyFired() {
	l.mu.Lock()
	l.lazyOnly, l.lazyArmed = false, false
	l.mu.Unlock()
	l.kick()
}

// addLazy queues an internal op nobody waits for (the delete of settled
// entries): it rides with the lane's next batch, or goes LazyOps after it
// was queued if no other op comes, so that at moderate load a message
// costs one lane batch (and one sync wait) fewer.
func (l *lane[S]) addLazy(o *op[S]) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	l.queue = append(l.queue, o)
	if len(l.queue) == 1 {
		l.lazyOnly, l.lazyArmed = true, true
		l.lazyTimer.Reset(l.in.cfg.LazyOps)
	}
	return nil
}

func (l *lane[S]) kick() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

func (l *lane[S]) run() {
	defer l.in.wg.Done()
	defer close(l.syncq)
	for range l.wake {
		for l.turn() {
		}
		l.mu.Lock()
		done := l.closed && len(l.queue) == 0
		l.mu.Unlock()
		if done {
			return
		}
	}
}

// turn commits what is queued and reports whether it did anything. Only
// the lane's goroutine runs it, so seqs, Applied and the syncer's queue
// keep the lane's order.
//
// Rejected: letting a SEND or an ACK that finds the lane idle commit on
// its own event-loop turn. It saved the lane goroutine's wake-up, but at
// flat out it cut the batches small (139-148K msgs/s at 64 pairs against
// 165-181K), and at moderate rates its saving was inside the noise.
func (l *lane[S]) turn() bool {
	l.mu.Lock()
	// The taken slice goes on to the syncer with its batch, so the queue
	// always starts a new one.
	var ops []*op[S]
	if !l.lazyOnly || l.closed { // lazy ops alone wait for their timer
		ops = l.queue
		l.queue, l.lazyOnly = nil, false
		if l.lazyArmed { // they ride with this batch: no turn of their own later
			l.lazyTimer.Stop()
			l.lazyArmed = false
		}
	}
	if len(ops) > maxBatch {
		l.queue = append(make([]*op[S], 0, len(ops)-maxBatch), ops[maxBatch:]...)
		ops = ops[:maxBatch:maxBatch]
	}
	counts, ready := l.counts, l.countsReady
	l.counts, l.countsReady = nil, false
	var reads []readLog // the read-log buffer goes with any batch (live.go)
	if len(ops) > 0 {
		reads, l.reads, l.readsSpare = l.reads, l.readsSpare[:0], nil
	}
	l.mu.Unlock()
	if len(ops) == 0 && !ready {
		return false
	}
	if ready {
		l.adoptCounts(counts)
	}
	if len(ops) > 0 {
		l.commit(ops, reads)
		l.mu.Lock()
		for _, o := range ops { // Applied ran for them: live delivery may go on
			if o.kind < kindAck {
				if n := l.pending[o.st.To] - 1; n > 0 {
					l.pending[o.st.To] = n
				} else {
					delete(l.pending, o.st.To)
				}
			}
		}
		l.mu.Unlock()
	}
	return true
}

// commit writes one batch: see the package comment for the invariants.
// reads are the read-log entries buffered since the last batch.
func (l *lane[S]) commit(ops []*op[S], reads []readLog) {
	in := l.in
	b := in.env.NewBatch()
	now := uint64(in.now().UnixMilli())
	day := uint32(now / 86_400_000)

	// Seqs for every op that adds an entry, assigned in queue order.
	n := 0
	for _, o := range ops {
		if o.kind < kindAck || o.kind == kindGroupFanout {
			n++ // an entry, or a group body's id
		}
	}
	var seq uint64
	if n > 0 {
		var err error
		if seq, err = in.seq.next(n); err != nil {
			l.fail(b, ops, err)
			return
		}
	}
	l.visible = l.visible[:0]
	l.fanouts = l.fanouts[:0]
	l.readRecs = l.readRecs[:0]
	l.writeReads(b, reads, now) // before any READ in the batch checks the log
	clear(l.released)
	for _, o := range ops {
		if o.st.Time == 0 {
			o.st.Time = now
		}
		switch o.kind {
		case KindMessage:
			o.st.Seq, seq = seq, seq+1
			if l.duplicate(b, o, day) {
				continue
			}
			if err := l.full(o); err != nil {
				o.err = err
				continue
			}
			l.addEntry(b, o)
			l.key = dedupKey(l.key[:0], day, o.st.From, &o.st.ID)
			b.Set(l.key, dedupValue(l.val[:0], o.st.To, o.st.Seq, o.st.Time, o.hash))
			in.seen.add(day, o.st.From, &o.st.ID)
		case KindReceipt, KindGroupEvent, KindGroupMessage:
			// Receipts, membership events and group messages (whose
			// senders the group admitted) are not refused by the quota.
			o.st.Seq, seq = seq, seq+1
			l.addEntry(b, o)
		case kindGroupFanout:
			o.st.Seq, seq = seq, seq+1
			l.storeGroup(b, o, day)
		case kindRelease:
			if l.released == nil {
				l.released = map[BodyRef]uint32{}
			}
			l.released[o.st.Ref] += o.release
		case kindDelete:
			for _, k := range o.keys {
				b.SingleDelete(k) // an inbox entry: Set once (seqs are never reused)
				l.settleDeleted(refOf(k))
			}
			l.depth[o.st.To] = l.depth[o.st.To].add(tally{-int32(len(o.keys)), -o.bytes})
			in.entries.Add(-int64(len(o.keys)))
		case kindAck:
			l.ack(b, o, now)
		case kindExpire:
			l.expire(b, o, now)
		case kindMarkRead:
			l.markRead(b, o, now)
		case kindLogRead: // written above, with any batch
		case kindAdopt:
			l.adopt(o.counts)
		case kindBarrier:
			b.Set(metaBarrier, nil)
		}
	}
	l.release(b)
	clear(l.early)
	clear(l.batchIDs)
	if l.commits++; l.counted && l.commits%1024 == 0 && len(l.depth) > 4096 {
		// Forget empty inboxes so that the map tracks only users with
		// entries or recent traffic; a forgotten one is counted again.
		for u, d := range l.depth {
			if d.n <= 0 {
				delete(l.depth, u)
			}
		}
	}
	clear(l.expiring)
	if b.Empty() {
		b.Close()
		l.fanOut() // a group event writes nothing in the group's own lane
		l.durable(ops)
		return
	}
	records := b.Count()
	var applied time.Time
	if in.cfg.Synced != nil {
		applied = time.Now()
	}
	err := in.env.ApplyNoSyncWait(b)
	for _, r := range l.deleted {
		delete(l.settling, r) // applied, or failed and may settle again
	}
	l.deleted = l.deleted[:0]
	if err != nil {
		l.fail(b, ops, err)
		return
	}
	in.commits.Add(1)
	in.records.Add(uint64(records))
	if len(l.visible) > 0 {
		in.hooks.Applied(l.visible)
	}
	l.fanOut()
	l.syncq <- &syncJob[S]{b: b, ops: ops, applied: applied}
}

// settleDeleted records that this batch deletes the entry r.
func (l *lane[S]) settleDeleted(r entryRef) {
	l.settling[r] = true
	l.deleted = append(l.deleted, r)
}

// storeGroup handles a group fan-out in the group's lane: a resent
// message already stored is answered from the dedup window; a new one has
// its body stored once, with a count of the members that must still
// acknowledge it. The members' entries are queued after the batch applies
// (fanOut), so a member's drain can always read the body.
func (l *lane[S]) storeGroup(b batch, o *op[S], day uint32) {
	o.parts = &countdown[S]{op: o, in: l.in}
	if o.st.Kind != KindMessage {
		l.splitRemote(o)
		l.writeOutbox(b, o)
		l.fanouts = append(l.fanouts, o)
		return
	}
	if l.duplicate(b, o, day) {
		return
	}
	l.splitRemote(o)
	binary.BigEndian.PutUint32(o.st.Ref[:4], uint32(o.st.Time/3_600_000))
	binary.BigEndian.PutUint64(o.st.Ref[4:], o.st.Seq)
	if len(o.members) > 0 { // no member homed here (a cluster): no body here
		l.val = appendHeader(l.val[:0], KindMessage, o.st.Time)
		l.val = append(l.val, o.st.ID[:]...)
		l.val = binary.BigEndian.AppendUint64(l.val, o.st.From)
		l.val = binary.BigEndian.AppendUint64(l.val, o.st.Group)
		b.Set(bodyKey(o.st.Ref, 0), append(l.val, o.st.Body...))
		b.Set(bodyKey(o.st.Ref, 1), binary.BigEndian.AppendUint32(nil, uint32(len(o.members))))
	}
	l.writeOutbox(b, o)
	l.key = dedupKey(l.key[:0], day, o.st.From, &o.st.ID)
	b.Set(l.key, dedupValue(l.val[:0], o.st.Group, o.st.Seq, o.st.Time, o.hash))
	l.in.seen.add(day, o.st.From, &o.st.ID)
	l.fanouts = append(l.fanouts, o)
}

// fanOut queues each member's entry of the group ops just applied, in the
// order the group's lane took them: every member sees one order.
func (l *lane[S]) fanOut() {
	for _, o := range l.fanouts {
		o.parts.n.Store(int32(len(o.members)) + 1) // the members' entries and this batch
		for _, m := range o.members {
			e := &op[S]{kind: o.st.Kind, st: Stored{To: m, Entry: o.st.Entry}, parts: o.parts}
			if o.st.Kind == KindMessage {
				e.kind, e.st.Kind = KindGroupMessage, KindGroupMessage
			}
			if err := l.in.lane(m).add(e, true); err != nil {
				o.parts.part(err)
			}
		}
	}
}

// release applies this batch's acknowledgements of group bodies: the
// count of members yet to acknowledge drops, and at zero the body goes.
// Only this lane writes the count of its groups' bodies, so the read and
// the write cannot race.
func (l *lane[S]) release(b batch) {
	for ref, n := range l.released {
		k := bodyKey(ref, 1)
		v, closer, err := l.in.env.Get(k)
		if err != nil {
			continue // gone already: expired with its hour
		}
		left := binary.BigEndian.Uint32(v)
		closer.Close()
		if left <= n {
			b.Delete(bodyKey(ref, 0))
			b.Delete(k)
		} else {
			b.Set(k, binary.BigEndian.AppendUint32(nil, left-n))
		}
	}
}

// addEntry writes op's inbox entry, counts it, and makes sure the expiry
// index names the user for the entry's hour.
func (l *lane[S]) addEntry(b batch, o *op[S]) {
	l.key = inboxKey(l.key[:0], o.st.To, o.st.Seq)
	l.val = o.st.encode(l.val[:0])
	b.Set(l.key, l.val)
	o.st.Size = uint32(len(l.val))
	one := tally{1, int64(len(l.val))}
	l.depth[o.st.To] = l.depth[o.st.To].add(one)
	if t, ok := l.early[o.st.To]; ok {
		l.early[o.st.To] = t.add(one)
	}
	l.in.entries.Add(1)
	l.visible = append(l.visible, &o.st)
	hour := uint32(o.st.Time / 3_600_000)
	slot := &l.xcache[(o.st.To*0x9E3779B97F4A7C15>>52)%uint64(len(l.xcache))]
	if slot.user != o.st.To || slot.hour != hour {
		b.Set(expiryKey(l.key[:0], hour, o.st.To), nil)
		*slot = xslot{user: o.st.To, hour: hour}
	}
}

// full says whether o's recipient's inbox may take o's entry: nil, or
// ErrInboxFull at the entry quota, or ErrInboxBytesFull if the entry would
// take it past the byte quota. Once the start-up count has arrived that is
// a map lookup. Before, it counts the inbox (up to the quota) once per
// batch; the batch's own deletes are not applied yet, so the count errs on
// the full side.
func (l *lane[S]) full(o *op[S]) error {
	user := o.st.To
	size := entryHeader + 32 + len(o.st.Body) // a message entry's value
	if l.counted {
		return l.in.cfg.refusal(l.depth[user], size)
	}
	t, ok := l.early[user]
	if !ok {
		t = l.in.countInbox(user, int32(l.in.cfg.Quota))
		if l.early == nil {
			l.early = map[uint64]tally{}
		}
		l.early[user] = t
	}
	return l.in.cfg.refusal(t, size)
}

// adoptCounts merges the start-up count with the changes the lane
// tracked since start: from now on depth is exact.
func (l *lane[S]) adoptCounts(counts map[uint64]tally) {
	for u, d := range l.depth {
		counts[u] = counts[u].add(d)
	}
	l.depth, l.counted, l.early = counts, true, nil
}

// duplicate applies the dedup rule to a message (or group message) op:
// if its sender stored the id in the dedup window (today and yesterday) or
// earlier in this batch, op is either the same message again (same
// recipient and body: op points at the original, whose SENT it gets,
// DUP flag or not) or a conflicting reuse of the id (o.err is
// ErrDuplicateID). Either way it stores nothing and reports true. A
// record written before bodies were hashed (24 bytes) compares the
// recipient only.
//
// Lanes are chosen by recipient, so two sends of one id to different
// recipients may be checked by two lanes at once and both be stored; the
// record then names the later. Only a client reusing ids concurrently can
// meet that, and each recipient still gets its message once.
func (l *lane[S]) duplicate(b batch, o *op[S], day uint32) bool {
	o.hash = o.bodyHash() // once: the dedup record stores it too
	to, hash := o.dedupTarget(), o.hash
	if l.batchIDs == nil {
		l.batchIDs = map[senderID]*op[S]{}
	}
	k := senderID{o.st.From, o.st.ID}
	if prev := l.batchIDs[k]; prev != nil && prev.err == nil {
		if prev.dedupTarget() != to || prev.hash != hash {
			o.err = ErrDuplicateID
			return true
		}
		o.duplicate, o.st.Seq, o.st.Time = true, prev.st.Seq, prev.st.Time
		return true // the original's batch syncs, and SENT follows it
	}
	l.batchIDs[k] = o // if it is stored (Err stays nil), later ones match it
	if !l.in.seen.mayHave(day, o.st.From, &o.st.ID) {
		return false
	}
	for _, d := range []uint32{day, day - 1} {
		l.key = dedupKey(l.key[:0], d, o.st.From, &o.st.ID)
		v, closer, err := l.in.env.Get(l.key)
		if err != nil {
			continue
		}
		found := len(v) == 24 || len(v) == 32
		same := found && binary.BigEndian.Uint64(v) == to && (len(v) == 24 || binary.BigEndian.Uint64(v[24:]) == hash)
		if same {
			o.st.Seq = binary.BigEndian.Uint64(v[8:])
			o.st.Time = binary.BigEndian.Uint64(v[16:])
		}
		closer.Close()
		switch {
		case same:
			// Rewrite the record: the batch then syncs like any other,
			// SENT follows the original's fsync, and the window restarts.
			o.duplicate = true
			l.key = dedupKey(l.key[:0], day, o.st.From, &o.st.ID)
			b.Set(l.key, dedupValue(l.val[:0], to, o.st.Seq, o.st.Time, hash))
			l.in.seen.add(day, o.st.From, &o.st.ID)
			return true
		case found:
			o.err = ErrDuplicateID
			return true
		}
	}
	return false
}

// dedupTarget is what the dedup record names as the recipient: the user,
// or the group.
func (o *op[S]) dedupTarget() uint64 {
	if o.kind == kindGroupFanout {
		return o.st.Group
	}
	return o.st.To
}

// bodyHash is the dedup record's 64-bit FNV-1a hash of the body, with a
// leading byte telling a group message from a direct one whose
// recipient's id happens to equal the group's.
func (o *op[S]) bodyHash() uint64 {
	h := uint64(14695981039346656037)
	kind := byte('u')
	if o.kind == kindGroupFanout {
		kind = 'g'
	}
	h = (h ^ uint64(kind)) * 1099511628211
	for _, c := range o.st.Body {
		h = (h ^ uint64(c)) * 1099511628211
	}
	return h
}

func dedupValue(dst []byte, to, seq, time, hash uint64) []byte {
	dst = binary.BigEndian.AppendUint64(dst, to)
	dst = binary.BigEndian.AppendUint64(dst, seq)
	dst = binary.BigEndian.AppendUint64(dst, time)
	return binary.BigEndian.AppendUint64(dst, hash)
}

// ack handles an acknowledgement of o.st.To's entries: the listed ones
// (o.acked), or else every entry in (o.ackFrom, o.ackTo], read from the
// inbox. An entry another ack or an expiry is already settling is skipped,
// and so is one old enough to have expired since it was pushed, unless it
// is still there (a Get, only for such old entries).
func (l *lane[S]) ack(b batch, o *op[S], now uint64) {
	acked := o.acked
	if acked == nil {
		acked = l.readAcked(o)
	}
	cutoff := now - min(now, uint64(l.in.cfg.TTL.Milliseconds()))
	var keep []Acked
	filtered := false
	for i, a := range acked {
		if l.settled(o.st.To, a, cutoff) {
			if !filtered {
				keep, filtered = append(make([]Acked, 0, len(acked)), acked[:i]...), true
			}
			continue
		}
		if filtered {
			keep = append(keep, a)
		}
	}
	if filtered {
		acked = keep
	}
	l.settle(b, o.st.To, acked, codec.ReceiptDelivered, now)
}

// settled reports whether an acknowledged entry is being settled already,
// or was stored before cutoff and is gone (expired after it was pushed).
func (l *lane[S]) settled(user uint64, a Acked, cutoff uint64) bool {
	if _, ok := l.settling[entryRef{user, a.Seq}]; ok {
		return true
	}
	if a.Time >= cutoff {
		return false // younger than the TTL: no expiry can have taken it
	}
	l.key = inboxKey(l.key[:0], user, a.Seq)
	_, closer, err := l.in.env.Get(l.key)
	if err != nil {
		return true
	}
	closer.Close()
	return false
}

// settle finishes entries of user's inbox that were acknowledged (kind
// delivered) or expired: messages among them produce receipts of kind for
// their senders (one per sender and group, up to 255 ids each), group
// bodies are released, and the entries are deleted once those receipts
// are durable (invariant 4), or in this batch if there are none.
func (l *lane[S]) settle(b batch, user uint64, acked []Acked, kind codec.ReceiptKind, now uint64) {
	type origin struct{ from, group uint64 }
	var receipts map[origin]*op[S]
	var order []*op[S]
	var firsts []uint64 // the first acknowledged seq each receipt covers
	keys := make([][]byte, 0, len(acked))
	kbuf := make([]byte, 0, 17*len(acked)) // one allocation for every key
	var releases map[BodyRef]*op[S]
	for _, a := range acked {
		kbuf = inboxKey(kbuf, user, a.Seq)
		keys = append(keys, kbuf[len(kbuf)-17:len(kbuf):len(kbuf)])
		if a.Kind == KindGroupMessage {
			if releases == nil {
				releases = map[BodyRef]*op[S]{}
			}
			r := releases[a.Ref]
			if r == nil {
				r = &op[S]{kind: kindRelease, st: Stored{To: a.Group, Entry: Entry{Group: a.Group, Ref: a.Ref}}}
				releases[a.Ref] = r
			}
			r.release++
		}
		if a.Kind != KindMessage && a.Kind != KindGroupMessage {
			continue
		}
		if receipts == nil {
			receipts = make(map[origin]*op[S])
		}
		og := origin{a.From, a.Group}
		r := receipts[og]
		if r == nil || r.st.IDs.Len() == codec.MaxIDs {
			r = receiptOp[S](Receipt{To: a.From, Time: now, Kind: kind, By: user, Group: a.Group})
			receipts[og] = r
			order = append(order, r)
			firsts = append(firsts, a.Seq)
		}
		r.st.IDs = r.st.IDs.AppendID(a.ID)
	}
	in := l.in
	for _, r := range releases {
		in.lane(r.st.Group).add(r, true)
	}
	if l.settling == nil {
		l.settling = map[entryRef]bool{}
	}
	if len(order) == 0 {
		for _, k := range keys {
			b.SingleDelete(k)
			l.settleDeleted(refOf(k))
		}
		l.depth[user] = l.depth[user].add(tally{-int32(len(keys)), -ackedBytes(acked)})
		in.entries.Add(-int64(len(keys)))
		return
	}
	for _, k := range keys {
		l.settling[refOf(k)] = false
	}
	if kind == codec.ReceiptDelivered {
		for i, r := range order {
			l.writeLog(b, user, r.st.To, r.st.Group, firsts[i], r.st.IDs, now) // what the reader may now report read
		}
	}
	var pending atomic.Int32
	pending.Store(int32(len(order)))
	del := &op[S]{kind: kindDelete, st: Stored{To: user}, keys: keys, bytes: ackedBytes(acked)}
	done := func(*op[S]) { // one closure for all the receipts: the last queues the delete
		if pending.Add(-1) == 0 {
			in.lane(user).addLazy(del)
		}
	}
	for _, r := range order {
		r.done = done
		if err := in.addReceipt(r); err != nil {
			r.done(r) // closing: the entries stay and are delivered again
		}
	}
}

// readAcked lists the entries in (o.ackFrom, o.ackTo] from the inbox.
func (l *lane[S]) readAcked(o *op[S]) []Acked {
	in := l.in
	lo := inboxKey(nil, o.st.To, o.ackFrom+1)
	hi := inboxKey(nil, o.st.To, o.ackTo+1)
	if o.ackTo == ^uint64(0) {
		hi = store.PrefixEnd(inboxPrefix(o.st.To))
	}
	it, err := in.env.NewIter(lo, hi)
	if err != nil {
		in.cfg.Logger.Error("ack: read inbox", zap.Uint64("user", o.st.To), zap.Error(err))
		return nil
	}
	defer it.Close()
	var out []Acked
	var e Entry
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		seq := binary.BigEndian.Uint64(k[9:])
		v, err := it.ValueAndErr()
		if err != nil || DecodeEntry(seq, v, &e) != nil {
			out = append(out, Acked{Seq: seq})
			continue
		}
		out = append(out, e.Acked())
	}
	return out
}

func (l *lane[S]) fail(b batch, ops []*op[S], err error) {
	b.Close()
	l.in.cfg.Logger.Error("inbox commit failed", zap.Int("ops", len(ops)), zap.Error(err))
	for _, o := range ops {
		o.err = err
	}
	l.durable(ops)
}

// ErrUnknownOutcome fails an op whose batch was applied but not confirmed
// durable: its entry may have been pushed and may survive a restart, or
// not. Only a resend with DUP can tell. An op that failed before the apply
// (any other error) was not stored.
var ErrUnknownOutcome = errors.New("offline: applied but not confirmed durable")

// syncer waits for each batch's fsync in order and then acknowledges it.
func (l *lane[S]) syncer() {
	defer l.in.wg.Done()
	for job := range l.syncq {
		err := l.in.env.SyncWait(job.b)
		if err == nil && l.in.cfg.SyncFault != nil {
			err = l.in.cfg.SyncFault()
		}
		if l.in.cfg.Synced != nil {
			l.in.cfg.Synced(time.Since(job.applied))
		}
		job.b.Close()
		if err != nil {
			l.in.cfg.Logger.Error("inbox sync failed", zap.Error(err))
			err = fmt.Errorf("%w: %w", ErrUnknownOutcome, err)
			for _, o := range job.ops {
				if o.err == nil { // one refused in the batch (quota) stays refused
					o.err = err
				}
			}
		}
		l.durable(job.ops)
	}
}

// durable runs completions and passes the caller-visible ops to the hooks.
func (l *lane[S]) durable(ops []*op[S]) {
	d := durable[S]{msgs: make([]*Message[S], 0, len(ops))}
	for _, o := range ops {
		if o.done != nil {
			o.done(o)
		}
		if o.wire != nil && o.err == nil {
			// Its outbox record is durable: the other homes' members next.
			l.in.cfg.FanOut(FanOut{Seq: o.st.Seq, Wire: o.wire, Members: o.remote})
		}
		switch {
		case o.parts != nil && (o.kind != kindGroupFanout || o.parts.n.Load() > 0):
			o.parts.part(o.err) // one part of a group fan-out
		case o.kind == kindGroupFanout: // a duplicate, or failed before fanning out
			if o.then != nil {
				o.then(o.err)
			}
			d.add(o)
		case o.kind < kindAck:
			d.add(o)
		}
	}
	d.report(l.in.hooks)
}
