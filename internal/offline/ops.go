package offline

import (
	"sync/atomic"

	"github.com/chatd/chatd/codec"
)

// Message is a message to store: for one user (Submit) or for the members
// of a group (SubmitGroup). S is the type of the sender's handle, which
// Hooks.Durable gives back with the outcome (the server's connection).
type Message[S any] struct {
	ID     codec.MsgID
	From   uint64
	To     uint64 // the recipient (Submit; SubmitGroup ignores it)
	Group  uint64 // the group (SubmitGroup; 0 for a 1:1 message)
	Body   []byte // owned by the message
	Dup    bool   // the sender flagged a resend (every message is checked against the dedup window)
	Time   uint64 // unix ms; 0 means now
	Sender S
	// Stamp is the caller's, carried untouched and never stored (the
	// server: a monotonic reading of when the SEND arrived, for its
	// SEND-to-SENT histogram).
	Stamp int64
	// FoldReceipt: if the recipient acknowledges the message live, its
	// sender's answer (Hooks.LiveAcked) carries the delivered receipt,
	// and no RECEIPT entry is made (the server: SENT_DELIVERED).
	FoldReceipt bool

	// Set by the lane before Hooks.Durable (or Hooks.LiveAcked) sees the message.
	Seq       uint64 // its entry's (a group message's: its body's)
	Duplicate bool   // a resend of a stored message: Seq and Time are the original's
	Delivered uint64 // unix ms of the recipient's ACK, for a message acknowledged live (Hooks.LiveAcked)
	Err       error

	op op[S] // the lane's work: a message is one allocation
}

// Receipt is a receipt for the sender of messages (To).
type Receipt struct {
	To    uint64 // the messages' sender
	Kind  codec.ReceiptKind
	By    uint64 // who received or read them
	Group uint64 // their group, 0 for 1:1
	IDs   codec.IDList
	Time  uint64 // unix ms; 0 means now
}

// GroupEvent is a change of a group, for its members (SubmitGroupEvent).
type GroupEvent struct {
	Group uint64
	Kind  codec.GroupEventKind
	Actor uint64
	Name  []byte
	Users codec.UserList
	Time  uint64 // unix ms; 0 means now
}

// Stored is an entry the lane wrote, as Read returns it, and its inbox.
type Stored struct {
	To uint64 // the inbox's owner; a group fan-out's: 0
	Entry
}

// Done is a receipt or group event that became durable or failed.
type Done struct {
	*Stored
	Err error
}

// Acked describes one acknowledged entry, as the server pushed it.
type Acked struct {
	Seq   uint64
	Kind  Kind
	Size  uint32 // the stored entry value's length: the byte quota counts it out
	Time  uint64 // when the entry was stored: old ones may have expired meanwhile
	From  uint64 // message sender
	Group uint64
	ID    codec.MsgID
	Ref   BodyRef // group messages: the shared body
	Live  bool    // pushed before it was stored (live.go): held in memory, not in the inbox
}

// Internal op kinds: they never reach Hooks.
const (
	kindAck    Kind = 100 // read acknowledged entries, queue receipts, then delete
	kindDelete Kind = 101 // delete keys
	kindExpire Kind = 102 // delete a user's entries older than a cutoff
	// kindGroupFanout runs in the group's lane: the dedup check, the body
	// stored once, then one entry per member queued to the members' lanes.
	kindGroupFanout Kind = 103
	// kindRelease runs in the group's lane: members acknowledged a body.
	kindRelease Kind = 104
	// kindMarkRead runs in the reader's lane (readlog.go).
	kindMarkRead Kind = 105
	// kindLogRead writes the read-log entries a lane buffered for messages
	// acknowledged live (every batch writes them; this op makes one).
	kindLogRead Kind = 108 // 106 and 107 are move.go's
)

// op is one unit of a lane's work: an entry to write (kind < kindAck:
// the entry is st), or an internal command, with its own fields.
type op[S any] struct {
	kind Kind
	st   Stored // st.To names the inbox, and so the lane, the op runs in
	err  error
	done func(*op[S]) // runs after the op is durable

	// Entries.
	msg       *Message[S] // the caller's message, for Durable
	duplicate bool        // a resend: st.Seq and st.Time are the original's
	hash      uint64      // the body's dedup hash, set by the dedup check
	parts     *countdown[S]

	members []uint64    // kindGroupFanout: st is the group message or event; the members homed here
	remote  []uint64    // kindGroupFanout: the members homed on other nodes (outbox.go)
	wire    []byte      // kindGroupFanout with remote members: the outbox record's entry
	then    func(error) // kindGroupFanout (FanIn): runs once every member's entry is durable

	keys    [][]byte // kindDelete: keys to delete; kindExpire (sweep): the index key
	cutoff  uint64   // kindExpire: entries stored before it expire
	ackFrom uint64   // kindAck: acknowledged range (ackFrom, ackTo]
	ackTo   uint64
	acked   []Acked          // kindAck: the acknowledged entries, when the caller knows them
	release uint32           // kindRelease: how many members acknowledged st.Ref
	read    *readOp          // kindMarkRead
	counts  map[uint64]tally // kindAdopt: imported entries by inbox
	bytes   int64            // kindDelete: the stored bytes of the keys' entries
}

// countdown reports a group fan-out durable once every part is. Parts
// finish on many lanes' syncers at once, so the first error goes to an
// atomic and reaches op.err only in the last part, which alone touches op.
type countdown[S any] struct {
	n   atomic.Int32
	err atomic.Pointer[error] // the first part's error
	op  *op[S]
	in  *Inbox[S]
}

func (c *countdown[S]) part(err error) {
	if err != nil {
		c.err.CompareAndSwap(nil, &err)
	}
	if c.n.Add(-1) == 0 {
		if e := c.err.Load(); e != nil && c.op.err == nil {
			c.op.err = *e
		}
		if c.op.then != nil {
			c.op.then(c.op.err)
		}
		var d durable[S]
		d.add(c.op)
		d.report(c.in.hooks)
	}
}

// durable collects the caller-visible ops of one report to Hooks.Durable.
type durable[S any] struct {
	msgs   []*Message[S]
	others []Done
}

// add copies op's outcome to the caller's value and lists it.
func (d *durable[S]) add(o *op[S]) {
	if m := o.msg; m != nil {
		m.Seq, m.Time, m.Duplicate, m.Err = o.st.Seq, o.st.Time, o.duplicate, o.err
		d.msgs = append(d.msgs, m)
		return
	}
	d.others = append(d.others, Done{Stored: &o.st, Err: o.err})
}

func (d *durable[S]) report(h Hooks[S]) {
	if len(d.msgs) > 0 || len(d.others) > 0 {
		h.Durable(d.msgs, d.others)
	}
}
