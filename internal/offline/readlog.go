package offline

import (
	"bytes"
	"encoding/binary"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/store"
	"go.uber.org/zap"
)

// The read log: what a reader may still report as read.
//
// A READ receipt is only produced for a message its reader was delivered
// and acknowledged, and only once. The ack of a batch of messages already
// writes one delivered receipt per (sender, group) to the senders; beside
// each, in the same batch, it writes one record to the reader's read log
// listing the same ids:
//
//	'r' | day (4) | reader (8) | sender (8) | group (8) | seq (8)  -> ids (16 each)
//
// seq is the first acknowledged entry the record covers, which makes the
// key unique per reader. So the log costs one record per acknowledged
// batch and sender, never one per message, and a READ does one seek per
// day of retention at most (usually one: today's). A READ removes the ids
// it reports, so a second READ of the same id is refused. Records older
// than the inbox TTL (rounded up to whole days) are dropped by one range
// deletion a day, as the dedup window is: a message delivered before that
// can no longer be reported read.
//
// Sender and group are separate fields of the key and of READ: a group
// message's record names the group and its sender, a 1:1 message's names
// group 0, so a user id is never taken for a group id or the reverse.

// readOp is a READ to check (kindMarkRead), in the reader's lane: check
// it against the read log, queue the read receipt for what was delivered,
// report the rest.
type readOp struct {
	sender, group uint64
	ids           codec.IDList // the ids reported read
	missing       codec.IDList // set by the lane: those not found
	done          func(missing codec.IDList, err error)
}

func readLogKey(dst []byte, day uint32, reader, sender, group, seq uint64) []byte {
	dst = readLogPrefix(dst, day, reader, sender, group)
	return binary.BigEndian.AppendUint64(dst, seq)
}

func readLogPrefix(dst []byte, day uint32, reader, sender, group uint64) []byte {
	dst = append(dst, store.PrefixReadLog)
	dst = binary.BigEndian.AppendUint32(dst, day)
	dst = binary.BigEndian.AppendUint64(dst, reader)
	dst = binary.BigEndian.AppendUint64(dst, sender)
	return binary.BigEndian.AppendUint64(dst, group)
}

// readLogDays is how many days of records a READ looks at: the TTL in
// whole days, plus today.
func (in *Inbox[S]) readLogDays() uint32 {
	return uint32((in.cfg.TTL+24*time.Hour-1)/(24*time.Hour)) + 1
}

// MarkRead checks reader's READ of ids sent by sender (in group, or 0 for
// a 1:1 conversation). The ids that reader was delivered, acknowledged and
// has not reported read yet go to sender as one read receipt; done then
// gets the others (nil when every id counted), or err when the check
// could not be made, on a lane goroutine. done must not block.
func (in *Inbox[S]) MarkRead(reader, sender, group uint64, ids codec.IDList, done func(missing codec.IDList, err error)) error {
	return in.lane(reader).add(markReadOp[S](reader, &readOp{sender: sender, group: group, ids: ids, done: done}), false)
}

func markReadOp[S any](reader uint64, r *readOp) *op[S] {
	return &op[S]{kind: kindMarkRead, st: Stored{To: reader}, read: r, done: func(o *op[S]) { r.done(r.missing, o.err) }}
}

// readRec is a read-log record this batch wrote or changed: the lane's
// batch is not readable, so later ops in the same batch look here first.
type readRec struct {
	key []byte
	ids codec.IDList // nil: deleted
	new bool         // written by this batch, not yet in the store
}

// writeLog writes the read-log record of reader's delivered ids from sender
// in group; first is the first acknowledged seq they cover.
func (l *lane[S]) writeLog(b batch, reader, sender, group, first uint64, delivered codec.IDList, now uint64) {
	k := readLogKey(nil, uint32(now/86_400_000), reader, sender, group, first)
	ids := append(codec.IDList(nil), delivered...)
	b.Set(k, ids)
	l.readRecs = append(l.readRecs, readRec{key: k, ids: ids, new: true})
}

// overlay returns the batch's version of key, if the batch touched it.
func (l *lane[S]) overlay(key []byte) (*readRec, bool) {
	for i := range l.readRecs {
		if bytes.Equal(l.readRecs[i].key, key) {
			return &l.readRecs[i], true
		}
	}
	return nil, false
}

// markRead handles kindMarkRead: o.st.To read o.read.ids from
// o.read.sender in o.read.group. What is found leaves the log and becomes
// a read receipt; o.read.missing gets what was not found.
func (l *lane[S]) markRead(b batch, o *op[S], now uint64) {
	in := l.in
	want := o.read.ids
	var found, missing codec.IDList
	take := func(key []byte, ids codec.IDList) codec.IDList {
		var rest codec.IDList
		for i := 0; i < ids.Len(); i++ {
			id := ids.At(i)
			if j := indexID(want, id); j >= 0 && indexID(found, id) < 0 {
				found = found.AppendID(id)
				continue
			}
			rest = rest.AppendID(id)
		}
		if rest.Len() == ids.Len() {
			return ids
		}
		if rest.Len() == 0 {
			b.Delete(key)
		} else {
			b.Set(key, rest)
		}
		if r, ok := l.overlay(key); ok {
			r.ids = rest
		} else {
			l.readRecs = append(l.readRecs, readRec{key: append([]byte(nil), key...), ids: rest})
		}
		return rest
	}
	// Records this batch wrote come first: an ACK and the READ after it
	// often share a batch.
	for i := range l.readRecs {
		r := &l.readRecs[i]
		if r.new && r.ids != nil && l.readRecFor(r.key, o) {
			take(r.key, r.ids)
		}
	}
	today := uint32(now / 86_400_000)
	days := in.readLogDays()
	if found.Len() < want.Len() {
		it, err := in.env.NewIter([]byte{store.PrefixReadLog}, []byte{store.PrefixReadLog + 1})
		if err != nil {
			in.cfg.Logger.Error("read log: iterate", zap.Uint64("reader", o.st.To), zap.Error(err))
		} else {
			var prefix []byte
			for d := uint32(0); d < days && d <= today && found.Len() < want.Len(); d++ {
				prefix = readLogPrefix(prefix[:0], today-d, o.st.To, o.read.sender, o.read.group)
				for it.SeekGE(prefix); it.Valid() && bytes.HasPrefix(it.Key(), prefix); it.Next() {
					if r, ok := l.overlay(it.Key()); ok {
						if r.ids != nil {
							take(r.key, r.ids)
						}
					} else if v, err := it.ValueAndErr(); err == nil && len(v)%16 == 0 {
						take(it.Key(), codec.IDList(v)) // take keeps nothing of v: it builds what remains afresh
					}
					if found.Len() == want.Len() {
						break
					}
				}
			}
			it.Close()
		}
	}
	for i := 0; i < want.Len(); i++ {
		if id := want.At(i); indexID(found, id) < 0 {
			missing = missing.AppendID(id)
		}
	}
	o.read.missing = missing
	if found.Len() == 0 {
		return
	}
	r := receiptOp[S](Receipt{To: o.read.sender, Time: now, Kind: codec.ReceiptRead, By: o.st.To, Group: o.read.group, IDs: found})
	if err := in.addReceipt(r); err != nil {
		o.read.missing = want // closing: nothing was reported
	}
}

// readRecFor reports whether a read-log key is about op's reader, sender
// and group (any day).
func (l *lane[S]) readRecFor(key []byte, o *op[S]) bool {
	if len(key) != 1+4+8+8+8+8 {
		return false
	}
	return binary.BigEndian.Uint64(key[5:]) == o.st.To && binary.BigEndian.Uint64(key[13:]) == o.read.sender &&
		binary.BigEndian.Uint64(key[21:]) == o.read.group
}

func indexID(l codec.IDList, id codec.MsgID) int {
	for i := 0; i < l.Len(); i++ {
		if l.At(i) == id {
			return i
		}
	}
	return -1
}

// trimReadLog drops read-log records older than the read window: one
// range deletion a day.
func (in *Inbox[S]) trimReadLog(today uint32) {
	days := in.readLogDays()
	if today < days {
		return
	}
	lo := []byte{store.PrefixReadLog}
	hi := binary.BigEndian.AppendUint32([]byte{store.PrefixReadLog}, today-days+1)
	if err := in.env.DeleteRange(lo, hi); err != nil {
		in.cfg.Logger.Error("read log: trim", zap.Error(err))
	}
}
