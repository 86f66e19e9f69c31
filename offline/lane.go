package offline

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/store"
	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/zap"
)

// lane owns the inboxes that hash to it; see the package comment.
type lane struct {
	in    *Inbox
	wake  chan struct{}
	syncq chan *syncJob

	mu     sync.Mutex
	queue  []*Op
	closed bool

	// Owned by run.
	visible  []*Op
	fanouts  []*Op
	released map[BodyRef]uint32
	depth    map[uint64]int32 // entries per inbox, for users touched since start
	xcache   [4096]xslot      // expiry index keys written recently
	commits  int
	key      []byte
	val      []byte
}

// xslot remembers that the expiry index has the key (hour, user), so the
// common case (many entries for one user within an hour) writes it once.
type xslot struct {
	user uint64
	hour uint32
}

type syncJob struct {
	b   *pebble.Batch
	ops []*Op
}

// maxBatch bounds one batch so that a burst does not hold pushes back for
// long; what is left waits for the next turn.
const maxBatch = 4096

func (l *lane) add(op *Op, internal bool) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	if !internal && len(l.queue) >= l.in.cfg.MaxQueued {
		l.mu.Unlock()
		return ErrBusy
	}
	l.queue = append(l.queue, op)
	first := len(l.queue) == 1
	l.mu.Unlock()
	if first {
		l.kick()
	}
	return nil
}

func (l *lane) kick() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

func (l *lane) run() {
	defer l.in.wg.Done()
	defer close(l.syncq)
	for range l.wake {
		for {
			// The taken slice goes on to the syncer with its batch, so the
			// queue always starts a new one.
			l.mu.Lock()
			ops := l.queue
			l.queue = nil
			if len(ops) > maxBatch {
				l.queue = append(make([]*Op, 0, len(ops)-maxBatch), ops[maxBatch:]...)
				ops = ops[:maxBatch:maxBatch]
			}
			closed := l.closed
			l.mu.Unlock()
			if len(ops) == 0 {
				if closed {
					return
				}
				break
			}
			l.commit(ops)
		}
	}
}

// commit writes one batch: see the package comment for the invariants.
func (l *lane) commit(ops []*Op) {
	in := l.in
	b := in.db.NewBatch()
	now := uint64(in.now().UnixMilli())
	day := uint32(now / 86_400_000)

	// Seqs for every op that adds an entry, assigned in queue order.
	n := 0
	for _, op := range ops {
		if op.Kind < kindAck || op.Kind == kindGroupFanout {
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
	clear(l.released)
	for _, op := range ops {
		if op.Time == 0 {
			op.Time = now
		}
		switch op.Kind {
		case KindMessage:
			op.Seq, seq = seq, seq+1
			if op.Dup && l.duplicate(op, day, ops) {
				// Rewrite the dedup record: the batch then syncs like any
				// other, and SENT follows the original's fsync.
				l.key = dedupKey(l.key[:0], day, op.From, &op.ID)
				b.Set(l.key, dedupValue(l.val[:0], op.To, op.Seq, op.Time), nil)
				continue
			}
			if l.inboxDepth(op.To) >= int32(in.cfg.Quota) {
				op.Err = ErrInboxFull
				continue
			}
			l.addEntry(b, op)
			l.key = dedupKey(l.key[:0], day, op.From, &op.ID)
			b.Set(l.key, dedupValue(l.val[:0], op.To, op.Seq, op.Time), nil)
		case KindReceipt, KindGroupEvent, KindGroupMessage:
			// Receipts, membership events and group messages (whose
			// senders the group admitted) are not refused by the quota.
			op.Seq, seq = seq, seq+1
			l.inboxDepth(op.To)
			l.addEntry(b, op)
		case kindGroupFanout:
			op.Seq, seq = seq, seq+1
			l.storeGroup(b, op, day, ops)
		case kindRelease:
			if l.released == nil {
				l.released = map[BodyRef]uint32{}
			}
			l.released[op.Ref] += uint32(op.Seq)
		case kindDelete:
			for _, k := range op.keys {
				b.Delete(k, nil)
			}
			l.depth[op.To] -= int32(len(op.keys))
			in.entries.Add(-int64(len(op.keys)))
		case kindAck:
			l.ack(b, op, now)
		case kindExpire:
			l.expire(b, op)
		}
	}
	l.release(b)
	if l.commits++; l.commits%1024 == 0 && len(l.depth) > 4096 {
		// Forget empty inboxes so that the map tracks only users with
		// entries or recent traffic; a forgotten one is counted again.
		for u, d := range l.depth {
			if d <= 0 {
				delete(l.depth, u)
			}
		}
	}
	if b.Empty() {
		b.Close()
		l.fanOut() // a group event writes nothing in the group's own lane
		l.durable(ops)
		return
	}
	if err := in.db.ApplyNoSyncWait(b, pebble.Sync); err != nil {
		l.fail(b, ops, err)
		return
	}
	if len(l.visible) > 0 {
		in.hooks.Applied(l.visible)
	}
	l.fanOut()
	l.syncq <- &syncJob{b: b, ops: ops}
}

// storeGroup handles a group fan-out in the group's lane: a resent
// message already stored is answered from the dedup window; a new one has
// its body stored once, with a count of the members that must still
// acknowledge it. The members' entries are queued after the batch applies
// (fanOut), so a member's drain can always read the body.
func (l *lane) storeGroup(b *pebble.Batch, op *Op, day uint32, batch []*Op) {
	op.parts = &countdown{op: op, in: l.in}
	if op.fan != KindMessage {
		l.fanouts = append(l.fanouts, op)
		return
	}
	if op.Dup && l.duplicate(op, day, batch) {
		l.key = dedupKey(l.key[:0], day, op.From, &op.ID)
		b.Set(l.key, dedupValue(l.val[:0], op.Group, op.Seq, op.Time), nil)
		return
	}
	binary.BigEndian.PutUint32(op.Ref[:4], uint32(op.Time/3_600_000))
	binary.BigEndian.PutUint64(op.Ref[4:], op.Seq)
	l.val = appendHeader(l.val[:0], KindMessage, op.Time)
	l.val = append(l.val, op.ID[:]...)
	l.val = binary.BigEndian.AppendUint64(l.val, op.From)
	l.val = binary.BigEndian.AppendUint64(l.val, op.Group)
	b.Set(bodyKey(op.Ref, 0), append(l.val, op.Body...), nil)
	b.Set(bodyKey(op.Ref, 1), binary.BigEndian.AppendUint32(nil, uint32(len(op.members))), nil)
	l.key = dedupKey(l.key[:0], day, op.From, &op.ID)
	b.Set(l.key, dedupValue(l.val[:0], op.Group, op.Seq, op.Time), nil)
	l.fanouts = append(l.fanouts, op)
}

// fanOut queues each member's entry of the group ops just applied, in the
// order the group's lane took them: every member sees one order.
func (l *lane) fanOut() {
	for _, op := range l.fanouts {
		op.parts.n.Store(int32(len(op.members)) + 1) // the members' entries and this batch
		for _, m := range op.members {
			e := &Op{Kind: op.fan, To: m, Time: op.Time, ID: op.ID, From: op.From, Group: op.Group, Body: op.Body,
				EventKind: op.EventKind, Actor: op.Actor, Name: op.Name, Users: op.Users, Ref: op.Ref, parts: op.parts}
			if op.fan == KindMessage {
				e.Kind = KindGroupMessage
			}
			if err := l.in.lane(m).add(e, true); err != nil {
				op.parts.part(err)
			}
		}
	}
}

// release applies this batch's acknowledgements of group bodies: the
// count of members yet to acknowledge drops, and at zero the body goes.
// Only this lane writes the count of its groups' bodies, so the read and
// the write cannot race.
func (l *lane) release(b *pebble.Batch) {
	for ref, n := range l.released {
		k := bodyKey(ref, 1)
		v, closer, err := l.in.db.Get(k)
		if err != nil {
			continue // gone already: expired with its hour
		}
		left := binary.BigEndian.Uint32(v)
		closer.Close()
		if left <= n {
			b.Delete(bodyKey(ref, 0), nil)
			b.Delete(k, nil)
		} else {
			b.Set(k, binary.BigEndian.AppendUint32(nil, left-n), nil)
		}
	}
}

// addEntry writes op's inbox entry, counts it, and makes sure the expiry
// index names the user for the entry's hour.
func (l *lane) addEntry(b *pebble.Batch, op *Op) {
	l.key = inboxKey(l.key[:0], op.To, op.Seq)
	l.val = op.encode(l.val[:0])
	b.Set(l.key, l.val, nil)
	l.depth[op.To]++
	l.in.entries.Add(1)
	l.visible = append(l.visible, op)
	hour := uint32(op.Time / 3_600_000)
	slot := &l.xcache[(op.To*0x9E3779B97F4A7C15>>52)%uint64(len(l.xcache))]
	if slot.user != op.To || slot.hour != hour {
		b.Set(expiryKey(l.key[:0], hour, op.To), nil, nil)
		*slot = xslot{user: op.To, hour: hour}
	}
}

// inboxDepth returns how many entries user's inbox holds, counting them
// once (bounded by the quota) the first time the lane meets the user.
func (l *lane) inboxDepth(user uint64) int32 {
	if d, ok := l.depth[user]; ok {
		return d
	}
	var n int32
	l.in.Read(user, 0, l.in.cfg.Quota+1, func(*Entry) bool { n++; return true })
	l.depth[user] = n
	return n
}

// duplicate reports whether op's id was already stored by its sender in the
// dedup window (today and yesterday), or earlier in this same batch, and if
// so points op at the original.
func (l *lane) duplicate(op *Op, day uint32, batch []*Op) bool {
	for _, o := range batch {
		if o == op {
			break
		}
		if o.Kind == KindMessage && !o.Duplicate && o.From == op.From && o.ID == op.ID {
			op.Duplicate, op.Seq, op.Time = true, o.Seq, o.Time
			return true
		}
	}
	for _, d := range []uint32{day, day - 1} {
		l.key = dedupKey(l.key[:0], d, op.From, &op.ID)
		v, closer, err := l.in.db.Get(l.key)
		if err != nil {
			continue
		}
		if len(v) == 24 {
			op.Duplicate = true
			op.Seq = binary.BigEndian.Uint64(v[8:])
			op.Time = binary.BigEndian.Uint64(v[16:])
		}
		closer.Close()
		if op.Duplicate {
			return true
		}
	}
	return false
}

func dedupValue(dst []byte, to, seq, time uint64) []byte {
	dst = binary.BigEndian.AppendUint64(dst, to)
	dst = binary.BigEndian.AppendUint64(dst, seq)
	return binary.BigEndian.AppendUint64(dst, time)
}

// ack handles an acknowledgement of op.To's entries: the listed ones
// (op.acked), or else every entry in (op.from, op.Seq], read from the
// inbox. Messages among them produce delivered receipts for their senders
// (one per sender and group, up to 255 ids each); the entries are deleted
// once those receipts are durable (invariant 4), or in this batch if there
// are none.
func (l *lane) ack(b *pebble.Batch, op *Op, now uint64) {
	acked := op.acked
	if acked == nil {
		acked = l.readAcked(op)
	}
	type origin struct{ from, group uint64 }
	var receipts map[origin]*Op
	var order []*Op
	keys := make([][]byte, 0, len(acked))
	var releases map[BodyRef]*Op
	for _, a := range acked {
		keys = append(keys, inboxKey(nil, op.To, a.Seq))
		if a.Kind == KindGroupMessage {
			if releases == nil {
				releases = map[BodyRef]*Op{}
			}
			r := releases[a.Ref]
			if r == nil {
				r = &Op{Kind: kindRelease, To: a.Group, Group: a.Group, Ref: a.Ref}
				releases[a.Ref] = r
			}
			r.Seq++
		}
		if a.Kind != KindMessage && a.Kind != KindGroupMessage {
			continue
		}
		if receipts == nil {
			receipts = make(map[origin]*Op)
		}
		o := origin{a.From, a.Group}
		r := receipts[o]
		if r == nil || r.IDs.Len() == codec.MaxIDs {
			r = &Op{Kind: KindReceipt, To: a.From, Time: now, ReceiptKind: codec.ReceiptDelivered, By: op.To, Group: a.Group}
			receipts[o] = r
			order = append(order, r)
		}
		r.IDs = r.IDs.AppendID(a.ID)
	}
	in := l.in
	for _, r := range releases {
		in.lane(r.Group).add(r, true)
	}
	if len(order) == 0 {
		for _, k := range keys {
			b.Delete(k, nil)
		}
		l.depth[op.To] -= int32(len(keys))
		in.entries.Add(-int64(len(keys)))
		return
	}
	var pending atomic.Int32
	pending.Store(int32(len(order)))
	del := &Op{Kind: kindDelete, To: op.To, keys: keys}
	for _, r := range order {
		r.done = func(*Op) {
			if pending.Add(-1) == 0 {
				in.lane(del.To).add(del, true)
			}
		}
		if err := in.lane(r.To).add(r, true); err != nil {
			r.done(r) // closing: the entries stay and are delivered again
		}
	}
}

// readAcked lists the entries in (op.from, op.Seq] from the inbox.
func (l *lane) readAcked(op *Op) []Acked {
	in := l.in
	lo := inboxKey(nil, op.To, op.from+1)
	hi := inboxKey(nil, op.To, op.Seq+1)
	if op.Seq == ^uint64(0) {
		hi = store.PrefixEnd(inboxPrefix(op.To))
	}
	it, err := in.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		in.cfg.Logger.Error("ack: read inbox", zap.Uint64("user", op.To), zap.Error(err))
		return nil
	}
	defer it.Close()
	var out []Acked
	var e Entry
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		seq := beUint64(k[9:])
		v, err := it.ValueAndErr()
		if err != nil || DecodeEntry(seq, v, &e) != nil {
			out = append(out, Acked{Seq: seq})
			continue
		}
		out = append(out, e.Acked())
	}
	return out
}

func (l *lane) fail(b *pebble.Batch, ops []*Op, err error) {
	b.Close()
	l.in.cfg.Logger.Error("inbox commit failed", zap.Int("ops", len(ops)), zap.Error(err))
	for _, op := range ops {
		op.Err = err
	}
	l.durable(ops)
}

// ErrUnknownOutcome fails an op whose batch was applied but not confirmed
// durable: its entry may have been pushed and may survive a restart, or
// not. Only a resend with DUP can tell. An op that failed before the apply
// (any other error) was not stored.
var ErrUnknownOutcome = errors.New("offline: applied but not confirmed durable")

// syncer waits for each batch's fsync in order and then acknowledges it.
func (l *lane) syncer() {
	defer l.in.wg.Done()
	for job := range l.syncq {
		err := job.b.SyncWait()
		if err == nil && l.in.cfg.SyncFault != nil {
			err = l.in.cfg.SyncFault()
		}
		job.b.Close()
		if err != nil {
			l.in.cfg.Logger.Error("inbox sync failed", zap.Error(err))
			err = fmt.Errorf("%w: %w", ErrUnknownOutcome, err)
			for _, op := range job.ops {
				if op.Err == nil { // one refused in the batch (quota) stays refused
					op.Err = err
				}
			}
		}
		l.durable(job.ops)
	}
}

// durable runs completions and passes the caller-visible ops to the hooks.
func (l *lane) durable(ops []*Op) {
	public := ops[:0:0]
	for _, op := range ops {
		if op.done != nil {
			op.done(op)
		}
		switch {
		case op.parts != nil && (op.Kind != kindGroupFanout || op.parts.n.Load() > 0):
			op.parts.part(op.Err) // one part of a group fan-out
		case op.Kind == kindGroupFanout:
			op.Kind = op.fan // a duplicate, or failed before fanning out
			public = append(public, op)
		case op.Kind < kindAck:
			public = append(public, op)
		}
	}
	if len(public) > 0 {
		l.in.hooks.Durable(public)
	}
}
