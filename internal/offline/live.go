package offline

import (
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
//     it live), and one read-log record per sender is written lazily, so
//     that READ works as for a stored message. The message cost no entry,
//     no dedup record and no sync wait.
//   - no ACK in time (a slow or departed recipient): the held message is
//     queued to its lane as if just submitted, with a new seq. It is
//     stored, its sender gets SENT after the fsync (invariant 3), and the
//     recipient gets it again from the inbox; it drops the copy by id,
//     as it drops any redelivery.
//
// What this keeps: SENT still means the message cannot be lost, because
// either it is on disk or its recipient said it has stored it. A server
// crash while a message is held loses nothing anyone was told of: its
// sender has no SENT and resends it. A live receipt is held the same way,
// until the sender acknowledges it or Config.LiveReceiptWait passes (then
// it is stored); a crash in that time loses it only if its sender did not
// take in the frame the server had written (invariant 4 holds for stored
// receipts only). A message held and acknowledged leaves no dedup record:
// a resend of it (a client that lost its SENT) is delivered again, and
// the recipient drops it by id.
//
// Held entries are bounded by the recipients' windows (entries and bytes),
// and leave memory within LiveWait or LiveReceiptWait.

// liveSlot is a held entry and when it is due to be stored.
type liveSlot[S any] struct {
	o   *op[S]
	due time.Time
}

// liveQueue holds a lane's held entries of one kind in the order they were
// pushed, which is also the order they fall due (one wait per queue).
type liveQueue[S any] struct {
	slots []liveSlot[S]
	head  int
}

func (q *liveQueue[S]) push(o *op[S], due time.Time) {
	if q.head > 0 && q.head >= len(q.slots)/2 {
		n := copy(q.slots, q.slots[q.head:])
		clear(q.slots[n:])
		q.slots, q.head = q.slots[:n], 0
	}
	q.slots = append(q.slots, liveSlot[S]{o, due})
}

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
	m.op = op[S]{kind: KindMessage, msg: m, st: Stored{To: m.To, Entry: Entry{Kind: KindMessage, Time: m.Time,
		ID: m.ID, From: m.From, Group: m.Group, Body: m.Body}}}
	return in.lane(m.To).live(&m.op, push)
}

// live pushes o through push if nothing of its inbox is queued or being
// committed, and holds it. The lane's lock is held across the push, so no
// entry of the same inbox can be given a seq and pushed in between: seqs
// stay in order on the connection.
func (l *lane[S]) live(o *op[S], push func(*Stored) bool) bool {
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
	if l.held == nil {
		l.held = map[entryRef]*op[S]{}
	}
	l.held[entryRef{o.st.To, seq}] = o
	q, wait := &l.liveMsgs, l.in.cfg.LiveWait
	if o.kind == KindReceipt {
		q, wait = &l.liveReceipts, l.in.cfg.LiveReceiptWait
	}
	q.push(o, time.Now().Add(wait))
	if !l.liveArmed {
		l.liveArmed = true
		l.liveTimer.Reset(wait)
	}
	l.in.live.pushed.Add(1)
	return true
}

// liveFired stores the held entries whose wait is over: they join the
// lane's queue like new ones (with new seqs).
func (l *lane[S]) liveFired() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.liveArmed = false
	if l.closed {
		return
	}
	now := time.Now()
	var next time.Time
	queued := false
	for _, q := range []*liveQueue[S]{&l.liveMsgs, &l.liveReceipts} {
		for {
			s, ok := q.front()
			if !ok {
				break
			}
			if s.due.After(now) {
				if next.IsZero() || s.due.Before(next) {
					next = s.due
				}
				break
			}
			q.pop()
			ref := entryRef{s.o.st.To, s.o.st.Seq}
			if l.held[ref] != s.o {
				continue // acknowledged
			}
			delete(l.held, ref)
			s.o.st.Seq = 0
			l.queue = append(l.queue, s.o)
			l.pending[s.o.st.To]++
			l.lazyOnly = false
			queued = true
			l.in.live.stored.Add(1)
		}
	}
	if !next.IsZero() {
		// Not sooner than an eighth of the wait: at 20,000 messages a
		// second the next one falls due within microseconds, and a timer
		// per message cost a goroutine and a wake-up each. A held entry
		// is stored up to that much after its wait.
		l.liveArmed = true
		l.liveTimer.Reset(max(next.Sub(now), l.in.cfg.LiveWait/8))
	}
	if queued {
		l.kick()
	}
}

// ackLive takes user's acknowledged live entries out of memory and
// returns the others (stored entries, for the lane's ack). Messages among
// the live ones are answered (Hooks.LiveAcked), their delivered receipts
// pushed live through push or stored, and the read log told, lazily.
// An entry no longer held was stored meanwhile: its stored copy settles
// when that is acknowledged.
func (in *Inbox[S]) ackLive(user uint64, acked []Acked, push func(*Stored) bool) []Acked {
	l := in.lane(user)
	stored := acked[:0]
	var msgs []*Message[S]
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
		if o.msg != nil {
			msgs = append(msgs, o.msg)
		}
	}
	l.mu.Unlock()
	if len(msgs) == 0 {
		return stored
	}
	in.live.acked.Add(uint64(len(msgs)))
	now := uint64(in.now().UnixMilli())
	// One delivered receipt and one read-log record per (sender, group),
	// as settle writes for stored messages.
	type origin struct{ from, group uint64 }
	var receipts []*op[S]
	var logs []readLog
	at := map[origin]int{}
	for _, m := range msgs {
		m.Seq, m.Time = m.op.st.Seq, m.op.st.Time
		og := origin{m.From, m.Group}
		i, ok := at[og]
		if !ok || receipts[i].st.IDs.Len() == codec.MaxIDs {
			i = len(receipts)
			at[og] = i
			receipts = append(receipts, receiptOp[S](Receipt{To: m.From, Time: now, Kind: codec.ReceiptDelivered, By: user, Group: m.Group}))
			logs = append(logs, readLog{sender: m.From, group: m.Group, first: m.Seq})
		}
		receipts[i].st.IDs = receipts[i].st.IDs.AppendID(m.ID)
	}
	for i, r := range receipts {
		logs[i].ids = r.st.IDs
		if !in.lane(r.st.To).live(r, push) {
			in.addReceipt(r) // closing: lost with the connection's tick, not the message
		}
	}
	in.lane(user).addLazy(&op[S]{kind: kindLogRead, st: Stored{To: user}, logs: logs})
	in.hooks.LiveAcked(msgs)
	return stored
}

// readLog is one read-log record to write for messages acknowledged live.
type readLog struct {
	sender, group, first uint64
	ids                  codec.IDList
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
