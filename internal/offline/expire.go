package offline

import (
	"encoding/binary"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/store"
	"go.uber.org/zap"
)

// Expiry. Pebble has no TTL, and scanning every inbox for old entries
// would cost a pass over the whole store. Instead each stored entry makes
// sure the expiry index holds the key
//
//	'x' | hour (4) | user (8)
//
// (lanes remember recent keys, so a busy user writes it about once an
// hour). A sweep walks only the index's keys for hours at or before the
// cutoff, and for each named user deletes entries from the front of the
// inbox while they are older than the cutoff: entries are in seq order,
// which is arrival order, so the first young one ends the walk. The index
// key goes once its hour holds nothing more.

// sweep runs the expiry pass and the dedup window clean-up periodically.
func (in *Inbox[S]) sweep() {
	defer in.sweeps.Done()
	t := time.NewTicker(in.cfg.SweepEvery)
	defer t.Stop()
	var dedupDay uint32
	var lastExpired uint64
	for {
		select {
		case <-in.stop:
			return
		case <-t.C:
		}
		now := in.now()
		users := in.ExpireBefore(now.Add(-in.cfg.TTL))
		if total := in.expired.Load(); total != lastExpired || users > 0 {
			in.cfg.Logger.Info("expiry sweep", zap.Int("users_due", users),
				zap.Uint64("expired_since_last_sweep", total-lastExpired), zap.Uint64("expired_total", total))
			lastExpired = total
		}
		if day := uint32(now.UnixMilli() / 86_400_000); day != dedupDay {
			in.trimDedup(day)
			in.trimReadLog(day)
			dedupDay = day
		}
	}
}

// ExpireBefore queues the deletion of every entry older than cutoff and
// returns how many users it looked at. Sweeps call it; tests too.
func (in *Inbox[S]) ExpireBefore(cutoff time.Time) int {
	ms := uint64(cutoff.UnixMilli())
	hi := expiryKey(nil, uint32(ms/3_600_000)+1, 0)
	it, err := in.env.NewIter([]byte{store.PrefixExpiry}, hi)
	if err != nil {
		in.cfg.Logger.Error("expiry: read index", zap.Error(err))
		return 0
	}
	defer it.Close()
	users := 0
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		user := binary.BigEndian.Uint64(k[5:])
		o := &op[S]{kind: kindExpire, st: Stored{To: user}, cutoff: ms, keys: [][]byte{append([]byte(nil), k...)}}
		if in.lane(user).add(o, true) != nil {
			break // closing
		}
		users++
	}
	return users
}

// Expired returns how many entries expired unacknowledged since start.
func (in *Inbox[S]) Expired() uint64 { return in.expired.Load() }

// Expiring reports whether an entry of user's stored at time (unix ms)
// has outlived the TTL, so that it must not be delivered, and if so queues
// the expiry of user's old entries, which sends their receipts. Pushes and
// drains call it (Read does) so that the sweep's period never stretches
// the TTL.
func (in *Inbox[S]) Expiring(user, time uint64) bool {
	cutoff := in.Cutoff()
	if time >= cutoff {
		return false
	}
	in.lane(user).add(&op[S]{kind: kindExpire, st: Stored{To: user}, cutoff: cutoff}, true)
	return true
}

// Purge queues the expiry of every entry in user's inbox, as if all were
// older than the TTL: the senders of its messages get expired receipts,
// and the entries are deleted once those are durable (the delete is
// lazy: Count reaches 0 a little later). Account deletion calls it;
// entries that arrive after it need another Purge.
func (in *Inbox[S]) Purge(user uint64) error {
	return in.lane(user).add(&op[S]{kind: kindExpire, st: Stored{To: user}, cutoff: ^uint64(0)}, true)
}

// Cutoff is the time (unix ms) before which entries have expired.
func (in *Inbox[S]) Cutoff() uint64 {
	now := uint64(in.now().UnixMilli())
	return now - min(now, uint64(in.cfg.TTL.Milliseconds()))
}

// expire settles o.st.To's entries stored before o.cutoff, from the front of
// the inbox: their messages' senders get expired receipts, and the entries
// are deleted after those are durable (settle). Entries an ack is settling
// already are left to it. For a sweep (o.keys), the index key o.keys[0]
// goes once a sweep finds its hour holds nothing more for the user.
func (l *lane[S]) expire(b batch, o *op[S], now uint64) {
	if l.expiring[o.st.To] {
		return // a second expiry in one batch would see the same entries
	}
	in := l.in
	prefix := inboxPrefix(o.st.To)
	it, err := in.env.NewIter(prefix, store.PrefixEnd(prefix))
	if err != nil {
		in.cfg.Logger.Error("expiry: read inbox", zap.Uint64("user", o.st.To), zap.Error(err))
		return
	}
	defer it.Close()
	var hour uint32
	if len(o.keys) > 0 {
		hour = binary.BigEndian.Uint32(o.keys[0][1:])
	}
	var expired []Acked
	var e Entry
	keep := false
	for it.First(); it.Valid(); it.Next() {
		seq := binary.BigEndian.Uint64(it.Key()[9:])
		v, err := it.ValueAndErr()
		if err != nil || len(v) < entryHeader {
			continue
		}
		t := binary.BigEndian.Uint64(v[2:])
		if t >= o.cutoff {
			keep = keep || uint32(t/3_600_000) <= hour
			break
		}
		if _, ok := l.settling[entryRef{o.st.To, seq}]; ok {
			keep = true
			continue
		}
		if DecodeEntry(seq, v, &e) != nil {
			e = Entry{Seq: seq} // deleted without a receipt
		}
		expired = append(expired, e.Acked())
	}
	if l.expiring == nil {
		l.expiring = map[uint64]bool{}
	}
	l.expiring[o.st.To] = true
	if n := len(expired); n > 0 {
		keep = true // the index key goes in a later sweep, once these are gone
		l.settle(b, o.st.To, expired, codec.ReceiptExpired, now)
		if total := in.expired.Add(uint64(n)); total == uint64(n) || n >= 100 {
			in.cfg.Logger.Info("expired unacknowledged inbox entries", zap.Uint64("user", o.st.To),
				zap.Int("entries", n), zap.Uint64("total_since_start", total))
		}
	}
	if !keep && len(o.keys) > 0 {
		b.Delete(o.keys[0])
		slot := &l.xcache[(o.st.To*0x9E3779B97F4A7C15>>52)%uint64(len(l.xcache))]
		if slot.user == o.st.To && slot.hour == hour {
			*slot = xslot{}
		}
	}
}

// trimDedup drops dedup records older than yesterday: the window is the
// current and the previous day. One range deletion per day, which Pebble
// turns into whole-file drops, never one per message.
func (in *Inbox[S]) trimDedup(today uint32) {
	if today < 2 {
		return
	}
	lo := []byte{store.PrefixDedup}
	hi := binary.BigEndian.AppendUint32([]byte{store.PrefixDedup}, today-1)
	if err := in.env.DeleteRange(lo, hi); err != nil {
		in.cfg.Logger.Error("dedup: trim window", zap.Error(err))
	}
}
