package offline

import (
	"cmp"
	"slices"
	"time"

	"github.com/chatd/chatd/codec"
)

// Live delivery: a message is pushed to its recipient before it is
// stored, and stored only if the recipient does not acknowledge it soon.
//
// A chat server's normal day is many users each sending now and then to
// someone who is online. Storing such a message costs six Pebble records
// (entry, dedup record, read-log record, receipt entry, and the deletes of
// both entries), a lane hand-off and an fsync wait, all for a message
// that lives a few milliseconds. So when the recipient's session is on
// this node, caught up, with room in its window, and its lane has nothing
// queued for it (so seq order holds: invariant 1), Deliver pushes the
// message at once with a fresh seq and holds it in memory. Then:
//
//   - the recipient's ACK covers it in time (Config.LiveWait): it was never
//     stored. Its sender is answered (Hooks.LiveAcked: SENT), its delivered
//     receipt is pushed the same way (or stored if the sender cannot take
//     it live), and its read-log entry is buffered in the lane and
//     written with the lane's next batch (within readLogDelay, merged with
//     the conversation's others), so that READ works as for a stored
//     message. The message cost no entry, no dedup record and no sync
//     wait.
//   - no ACK in time (a slow or departed recipient): the held message is
//     queued to its lane as if just submitted, with a new seq. It is
//     stored, its sender gets SENT after the fsync (invariant 3), and the
//     recipient gets it again from the inbox; it drops the copy by id,
//     as it drops any redelivery.
//
// What this keeps: SENT still means the message cannot be lost, because
// either it is on disk or its recipient said it has stored it. A server
// crash while a message is held loses nothing anyone was told of: its
// sender has no SENT and resends it. A delivered receipt pushed live is
// not held at all: it goes in the same write as the message's SENT and
// just before it, so a sender that has the SENT has the receipt, and one
// that lost both resends the message and gets both again; a receipt its
// sender cannot take live (offline elsewhere, behind, window full) is
// stored. A message held and acknowledged leaves no dedup record:
// a resend of it (a client that lost its SENT) is delivered again, and
// the recipient drops it by id.
//
// Held messages are bounded by the recipients' windows (entries and
// bytes), and leave memory within LiveWait.

// liveSlot is a held entry and when it is due to be stored. It names the
// entry by ref, not through o: an entry acknowledged in time is recycled
// (and may be held again under another ref) while its slot still waits.
type liveSlot[S any] struct {
	ref entryRef
	o   *op[S]
	due time.Time
}

// liveQueue holds a lane's held messages in the order they were pushed,
// which is also the order they fall due (one wait for all).
type liveQueue[S any] struct {
	slots []liveSlot[S]
	head  int
}

func (q *liveQueue[S]) push(ref entryRef, o *op[S], due time.Time) {
	if q.head > 0 && q.head >= len(q.slots)/2 {
		n := copy(q.slots, q.slots[q.head:])
		clear(q.slots[n:])
		q.slots, q.head = q.slots[:n], 0
	}
	q.slots = append(q.slots, liveSlot[S]{ref, o, due})
}

func (q *liveQueue[S]) empty() bool { return q.head == len(q.slots) }

func (q *liveQueue[S]) front() (liveSlot[S], bool) {
	if q.head == len(q.slots) {
		return liveSlot[S]{}, false
	}
	return q.slots[q.head], true
}

func (q *liveQueue[S]) pop() {
	q.slots[q.head] = liveSlot[S]{}
	if q.head++; q.head == len(q.slots) {
		q.slots, q.head = q.slots[:0], 0
	}
}

// Deliver tries to deliver m live: push gets m's entry with a fresh seq
// and pushes it to the recipient's session if it can (online here, caught
// up, room in its window; it runs under the lane's lock and must not
// block). If Deliver reports false, nothing was pushed or kept: the caller
// submits m as usual. If true, Hooks.LiveAcked or Hooks.Durable answers m
// later, as for Submit. A message flagged Dup is never delivered live:
// it needs the dedup check.
func (in *Inbox[S]) Deliver(m *Message[S], push func(*Stored) bool) bool {
	if m.Dup || in.cfg.LiveWait < 0 {
		return false
	}
	m.setOp()
	return in.lane(m.To).live(&m.op, push, true)
}

// live pushes o through push if nothing of its inbox is queued or being
// committed, and holds it if hold is set (a message). The lane's lock is
// held across the push, so no entry of the same inbox can be given a seq
// and pushed in between: seqs stay in order on the connection.
func (l *lane[S]) live(o *op[S], push func(*Stored) bool, hold bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || l.pending[o.st.To] > 0 {
		return false
	}
	seq, err := l.in.seq.next(1)
	if err != nil {
		return false
	}
	o.st.Seq = seq
	if o.st.Time == 0 {
		o.st.Time = uint64(l.in.now().UnixMilli())
	}
	if !push(&o.st) {
		o.st.Seq = 0 // the seq is skipped: a gap is never a lost entry
		return false
	}
	l.in.live.pushed.Add(1)
	if !hold {
		return true
	}
	if l.held == nil {
		l.held = map[entryRef]*op[S]{}
	}
	ref := entryRef{o.st.To, seq}
	l.held[ref] = o
	wait := l.in.cfg.LiveWait
	first := l.liveMsgs.empty()
	l.liveMsgs.push(ref, o, time.Now().Add(wait))
	if first {
		l.in.armLive(wait)
	}
	return true
}

// armLive makes sure the inbox's live timer fires within d. Held entries
// fall due in the order they were held, whatever their lane, so a timer
// armed when a lane's queue turned non-empty fires no later than anything
// held after it falls due.
//
// One timer serves every lane: a fire costs a goroutine and a thread
// wake-up, and a timer per lane (eight on two cores) fired 256 times a
// second under load to find most of its entries acknowledged.
func (in *Inbox[S]) armLive(d time.Duration) {
	in.liveMu.Lock()
	if !in.liveArmed {
		in.liveArmed = true
		in.liveTimer.Reset(d)
	}
	in.liveMu.Unlock()
}

// liveFired stores, lane by lane, the held entries whose wait is over,
// and arms the timer again for the earliest left: not sooner than an
// eighth of the wait, since under load the next one falls due within
// microseconds. A held message is stored up to that much after its wait.
func (in *Inbox[S]) liveFired() {
	in.liveMu.Lock()
	in.liveArmed = false
	in.liveMu.Unlock()
	var next time.Time
	for _, l := range in.lanes {
		if due, ok := l.storeDue(); ok && (next.IsZero() || due.Before(next)) {
			next = due
		}
	}
	if !next.IsZero() {
		in.armLive(max(time.Until(next), in.cfg.LiveWait/8))
	}
}

// storeDue queues the lane's held entries whose wait is over like new ones
// (with new seqs), and returns when the earliest one left falls due.
func (l *lane[S]) storeDue() (next time.Time, left bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return next, false
	}
	now := time.Now()
	queued := false
	for {
		s, ok := l.liveMsgs.front()
		if !ok {
			break
		}
		if s.due.After(now) {
			next, left = s.due, true
			break
		}
		l.liveMsgs.pop()
		if l.held[s.ref] != s.o {
			continue // acknowledged
		}
		delete(l.held, s.ref)
		s.o.st.Seq = 0
		l.queue = append(l.queue, s.o)
		l.pending[s.o.st.To]++
		l.lazyOnly = false
		queued = true
		l.in.live.stored.Add(1)
	}
	if queued {
		l.kick()
	}
	return next, left
}

// ackLive takes user's acknowledged live entries out of memory and
// returns the others (stored entries, for the lane's ack). Messages among
// the live ones are answered (Hooks.LiveAcked), their delivered receipts
// (but those FoldReceipt puts in the answer) pushed live through push or
// stored, and the read log told (readLogs).
// An entry no longer held was stored meanwhile: its stored copy settles
// when that is acknowledged.
func (in *Inbox[S]) ackLive(user uint64, acked []Acked, push func(*Stored) bool) []Acked {
	l := in.lane(user)
	stored := acked[:0]
	// The list goes to Hooks.LiveAcked, an interface call, so it cannot
	// live on the stack: a new one per ACK was most of what a message
	// still allocated. It comes from a pool, taken at the first message
	// still held (an ACK of stored entries only takes none).
	var list *[]*Message[S]
	now := uint64(in.now().UnixMilli())
	l.mu.Lock()
	for _, a := range acked {
		if !a.Live {
			stored = append(stored, a)
			continue
		}
		ref := entryRef{user, a.Seq}
		o := l.held[ref]
		if o == nil {
			continue
		}
		delete(l.held, ref)
		m := o.msg // only messages are held
		m.Seq, m.Time, m.Delivered = o.st.Seq, o.st.Time, now
		if list == nil {
			list, _ = in.ackBufs.Get().(*[]*Message[S])
			if list == nil {
				list = new([]*Message[S])
			}
		}
		*list = append(*list, m)
		l.logRead(user, m)
	}
	l.mu.Unlock()
	if list == nil {
		return stored
	}
	msgs := *list
	in.live.acked.Add(uint64(len(msgs)))
	// One delivered receipt per (sender, group), as settle makes for
	// stored messages, but none for a message whose answer carries it
	// (FoldReceipt). An ACK covers one message or a few: a linear search
	// beats a map.
	var receipts []*op[S]
	for _, m := range msgs {
		if m.FoldReceipt {
			continue
		}
		var r *op[S]
		for _, x := range receipts {
			if x.st.To == m.From && x.st.Group == m.Group && x.st.IDs.Len() < codec.MaxIDs {
				r = x
				break
			}
		}
		if r == nil {
			r = in.liveReceipt(Receipt{To: m.From, Time: now, Kind: codec.ReceiptDelivered, By: user, Group: m.Group})
			receipts = append(receipts, r)
		}
		r.st.IDs = r.st.IDs.AppendID(m.ID)
	}
	for _, r := range receipts {
		if in.lane(r.st.To).live(r, push, false) {
			in.recycleReceipt(r) // its frame is queued before the SENT: nothing holds it
			continue
		}
		// Stored. Closing, it is lost with the SENT it would have come
		// with: the sender resends the message and gets both.
		_ = in.addReceipt(r)
	}
	in.hooks.LiveAcked(msgs)
	for _, m := range msgs {
		in.recycle(m)
	}
	clear(msgs)
	if *list = msgs[:0]; cap(msgs) > 256 {
		*list = nil // an ACK of a whole backlog: not worth keeping
	}
	in.ackBufs.Put(list)
	return stored
}

// NewMessage returns an empty Message for Submit or Deliver, recycled
// from one acknowledged live (its Body has capacity to reuse: append to
// Body[:0]). A message delivered live and acknowledged is recycled once
// Hooks.LiveAcked returns; the rest are left to the garbage collector.
// At 20,000 messages a second the message and its receipt were most of
// the server's allocation, and the collector's work showed in the tail
// latency.
func (in *Inbox[S]) NewMessage() *Message[S] {
	if m, ok := in.msgPool.Get().(*Message[S]); ok {
		return m
	}
	return new(Message[S])
}

// recycle empties m and pools it. Nothing may refer to it: a live slot
// still naming its op checks the ref, not the op's fields.
func (in *Inbox[S]) recycle(m *Message[S]) {
	body := m.Body[:0]
	if cap(body) > 1024 {
		body = nil // a big one: not worth holding
	}
	*m = Message[S]{Body: body}
	in.msgPool.Put(m)
}

// liveReceipt returns a delivered receipt's op, recycled from one pushed
// live.
func (in *Inbox[S]) liveReceipt(r Receipt) *op[S] {
	o, ok := in.opPool.Get().(*op[S])
	if !ok {
		return receiptOp[S](r)
	}
	r.IDs = o.st.IDs[:0]
	o.setReceipt(r)
	return o
}

// recycleReceipt pools o, a receipt pushed live.
func (in *Inbox[S]) recycleReceipt(o *op[S]) {
	ids := o.st.IDs[:0]
	*o = op[S]{}
	if cap(ids) <= 4*16 {
		o.st.IDs = ids
	}
	in.opPool.Put(o)
}

// readLog is a read-log entry waiting in its lane's buffer: reader was
// delivered id from sender in group, as the entry seq.
type readLog struct {
	reader, sender, group, seq uint64
	id                         codec.MsgID
}

// readLogDelay is how long a lane buffers the read-log entries of
// messages acknowledged live before it writes them: the entries of one
// conversation within it become one record. Every batch the lane commits
// writes the buffer first, so a READ (a lane op) always finds what was
// acknowledged before it; a crash loses at most this much of the log,
// and a READ of those messages after the restart is refused (ERROR 36)
// as if they had not been delivered.
const readLogDelay = time.Second

// logRead buffers m's read-log entry and arms the lane's flush. l.mu must
// be held.
func (l *lane[S]) logRead(reader uint64, m *Message[S]) {
	l.reads = append(l.reads, readLog{reader: reader, sender: m.From, group: m.Group, seq: m.Seq, id: m.ID})
	if !l.readsArmed {
		l.readsArmed = true
		l.readsTimer.Reset(untilSlot(time.Now(), l.readsSlot, readLogDelay))
	}
}

// untilSlot returns how long from now until the clock's next instant at
// slot within period (0 <= slot < period): more than 0, at most period.
//
// Each lane writes its read-log buffer at its own slot of the second
// (lane i at i/Lanes of readLogDelay), not readLogDelay after its first
// entry. Under a steady flow every lane's first entry came at the same
// moment, so all of them sorted and committed their buffers at once,
// once a second: a few milliseconds of CPU on the other core in one
// piece, which stalled the load generator's deliveries (at 1,000 pairs
// and 20,000 msgs/s, a quarter of the messages over 2 ms were sent in the
// 40 ms after each such second). Spread, each write is an eighth of that.
func untilSlot(now time.Time, slot, period time.Duration) time.Duration {
	d := (slot - time.Duration(now.UnixNano())%period) % period
	if d <= 0 {
		d += period
	}
	return d
}

// readsFired queues a batch for the buffered read-log entries.
func (l *lane[S]) readsFired() {
	l.mu.Lock()
	l.readsArmed = false
	l.mu.Unlock()
	l.add(&op[S]{kind: kindLogRead}, true) // closing: Close flushed them
}

// writeReads writes reads, the read-log entries turn took from the
// buffer, into b: one record per conversation (reader, sender, group), up
// to codec.MaxIDs ids, keyed by its first seq. commit calls it at the
// start of every batch; the buffer's two slices take turns, so a steady
// flow of entries allocates nothing.
func (l *lane[S]) writeReads(b batch, reads []readLog, now uint64) {
	defer func() { l.readsSpare = reads }()
	if len(reads) == 0 {
		return
	}
	// By conversation, and within it by seq, the order they were buffered
	// in (a reader's seqs only grow): an unstable sort on the whole key
	// costs less than a stable one on the conversation.
	slices.SortFunc(reads, func(a, b readLog) int {
		return cmp.Or(cmp.Compare(a.reader, b.reader), cmp.Compare(a.sender, b.sender), cmp.Compare(a.group, b.group),
			cmp.Compare(a.seq, b.seq))
	})
	for i := 0; i < len(reads); {
		r := reads[i]
		ids := l.readIDs[:0]
		for ; i < len(reads) && reads[i].reader == r.reader && reads[i].sender == r.sender && reads[i].group == r.group &&
			ids.Len() < codec.MaxIDs; i++ {
			ids = ids.AppendID(reads[i].id)
		}
		l.writeLog(b, r.reader, r.sender, r.group, r.seq, ids, now)
		l.readIDs = ids
	}
}

// LiveStats counts live deliveries since start.
type LiveStats struct {
	Pushed uint64 // entries (messages and receipts) pushed before being stored
	Acked  uint64 // messages acknowledged in time: never stored
	Stored uint64 // entries stored because no ACK came in time
}

// Live returns the live-delivery counts.
func (in *Inbox[S]) Live() LiveStats {
	return LiveStats{Pushed: in.live.pushed.Load(), Acked: in.live.acked.Load(), Stored: in.live.stored.Load()}
}
