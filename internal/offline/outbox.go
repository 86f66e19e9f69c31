package offline

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"

	"github.com/chatd/chatd/internal/store"
)

// Group fan-out across nodes. In a cluster a group's members may be homed
// on other nodes (Config.Remote), whose inboxes this node does not keep.
// The group's lane writes, in the batch that stores the message (or takes
// the event), an outbox record naming those members:
//
//	'o' | seq (8) -> wire entry (AppendWire: a message with its body) | members (8 each)
//
// so that a SENT answered after that batch's sync promises them the
// message even if this node dies next. Once the record is durable,
// Config.FanOut gets it, in the group's order; the server sends it to the
// members' homes, each of which stores it with FanIn, and calls
// FanOutDone when every one has. A node that restarts sends its Outbox
// again: the members' homes drop what they already have (a message by its
// sender and id, like any resend).

// FanOut is a group message or event for members homed on other nodes.
type FanOut struct {
	Seq     uint64   // the outbox record's: the message's seq at this node
	Wire    []byte   // the entry as AppendWire writes it; a message carries its body
	Members []uint64 // the members it is for
}

func outboxKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{store.PrefixOutbox}, seq)
}

// splitRemote keeps in o.members the members homed on this node and moves
// the others to o.remote, when the inbox is a cluster node's.
func (l *lane[S]) splitRemote(o *op[S]) {
	if l.in.cfg.Remote == nil || l.in.cfg.FanOut == nil {
		return
	}
	local := o.members[:0:0]
	for _, m := range o.members {
		if l.in.cfg.Remote(m) {
			o.remote = append(o.remote, m)
		} else {
			local = append(local, m)
		}
	}
	if len(o.remote) > 0 {
		o.members = local
	}
}

// writeOutbox adds o's outbox record to the batch, if it has remote
// members.
func (l *lane[S]) writeOutbox(b batch, o *op[S]) {
	if len(o.remote) == 0 {
		return
	}
	e := o.st.Entry
	e.Seq = o.st.Seq
	o.wire, _ = e.AppendWire(nil) // a message or an event: never a body-less reference
	v := append([]byte(nil), o.wire...)
	for _, m := range o.remote {
		v = binary.BigEndian.AppendUint64(v, m)
	}
	b.Set(outboxKey(o.st.Seq), v)
}

// Outbox calls fn with each fan-out not yet done, in seq order (which is
// each group's order), until fn returns false. For a node's start.
func (in *Inbox[S]) Outbox(fn func(FanOut) bool) error {
	it, err := in.env.NewIter([]byte{store.PrefixOutbox}, []byte{store.PrefixOutbox + 1})
	if err != nil {
		return fmt.Errorf("offline: read outbox: %w", err)
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		v, err := it.ValueAndErr()
		if err != nil || len(k) != 9 || len(v) < 12 {
			in.cfg.Logger.Error("outbox record unreadable: skipped")
			continue
		}
		n := 12 + int(binary.BigEndian.Uint32(v[8:]))
		if n > len(v) || (len(v)-n)%8 != 0 {
			in.cfg.Logger.Error("outbox record corrupt: skipped")
			continue
		}
		f := FanOut{Seq: binary.BigEndian.Uint64(k[1:]), Wire: append([]byte(nil), v[:n]...)}
		for rest := v[n:]; len(rest) > 0; rest = rest[8:] {
			f.Members = append(f.Members, binary.BigEndian.Uint64(rest))
		}
		if !fn(f) {
			break
		}
	}
	return it.Error()
}

// FanOutDone deletes the outbox record of seq: every member's home has it.
func (in *Inbox[S]) FanOutDone(seq uint64) error {
	return in.env.Delete(outboxKey(seq))
}

// FanIn stores group messages and events another node fanned out to
// members homed here, each in its group's order (items of one group must
// come in order), and calls done once every member's entry is durable, or
// with the first error. A message this inbox already has (by its sender
// and id, within the dedup window) is not stored again.
func (in *Inbox[S]) FanIn(items []FanOut, done func(error)) error {
	if len(items) == 0 {
		done(nil)
		return nil
	}
	ops := make([]*op[S], 0, len(items))
	for _, f := range items {
		var e Entry
		rest, err := DecodeWire(f.Wire, &e)
		if err != nil || len(rest) > 0 || (e.Kind != KindMessage && e.Kind != KindGroupEvent) || e.Group == 0 {
			return fmt.Errorf("%w: fanned-out entry %d", ErrCorrupt, f.Seq)
		}
		e.Seq = 0
		ops = append(ops, &op[S]{kind: kindGroupFanout, members: f.Members, st: Stored{Entry: e}})
	}
	var left atomic.Int32
	var first atomic.Pointer[error]
	left.Store(int32(len(ops)))
	finish := func(err error) {
		if err != nil {
			first.CompareAndSwap(nil, &err)
		}
		if left.Add(-1) == 0 {
			if e := first.Load(); e != nil {
				done(*e)
				return
			}
			done(nil)
		}
	}
	for i, o := range ops {
		o.then = finish
		if err := in.lane(o.st.Group).add(o, false); err != nil {
			for range ops[i:] {
				finish(err)
			}
			return nil
		}
	}
	return nil
}
