package offline

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/store"
)

// Kind is the kind of an inbox entry.
type Kind uint8

const (
	KindMessage    Kind = 1 // a DELIVER
	KindReceipt    Kind = 2 // a RECEIPT
	KindGroupEvent Kind = 3 // a GROUP_EVENT
	// KindGroupMessage is a member's reference to a group message whose
	// body is stored once for all members; it delivers as a DELIVER.
	KindGroupMessage Kind = 4
)

// Entry value layout. Every entry starts with the same 10 bytes:
//
//	| kind (1) | codec (1) | time (8) |
//
// codec is 0 for a raw body; other values name a body compression and
// dictionary, so that a dictionary added later never decodes old entries.
// Then, by kind:
//
//	message:     | id (16) | from (8) | group (8) | body (rest)
//	receipt:     | receipt kind (1) | by (8) | group (8) | ids (16 each, rest)
//	group event: | event kind (1) | group (8) | actor (8) | name str8 | users (8 each, rest)
//	group msg:   | id (16) | from (8) | group (8) | body ref (12: hour (4) | body (8))
//
// A group message body is stored once under 'b' | body ref | 0 with the
// message header, and 'b' | body ref | 1 counts the members that have not
// acknowledged it yet.
const entryHeader = 10

// BodyRef names a stored group message body: its hour and id.
type BodyRef [12]byte

// ErrCorrupt reports an inbox entry that does not decode.
var ErrCorrupt = errors.New("offline: corrupt entry")

// Entry is a decoded inbox entry. Its slices alias the value it was decoded
// from.
type Entry struct {
	Seq  uint64
	Kind Kind
	Time uint64

	ID    codec.MsgID // message
	From  uint64      // message: sender
	Group uint64      // message, receipt, group event
	Body  []byte      // message

	ReceiptKind codec.ReceiptKind // receipt
	By          uint64            // receipt: who received or read
	IDs         codec.IDList      // receipt

	EventKind codec.GroupEventKind // group event
	Actor     uint64
	Name      []byte
	Users     codec.UserList

	Ref BodyRef // group message

	// Size is the stored value's length, which the byte quota counts
	// (DecodeEntry and the lane that stores the entry set it).
	Size uint32
}

func appendHeader(dst []byte, k Kind, time uint64) []byte {
	dst = append(dst, byte(k), 0)
	return binary.BigEndian.AppendUint64(dst, time)
}

// encode appends e's entry value.
func (e *Entry) encode(dst []byte) []byte {
	dst = appendHeader(dst, e.Kind, e.Time)
	switch e.Kind {
	case KindMessage:
		dst = append(dst, e.ID[:]...)
		dst = binary.BigEndian.AppendUint64(dst, e.From)
		dst = binary.BigEndian.AppendUint64(dst, e.Group)
		dst = append(dst, e.Body...)
	case KindReceipt:
		dst = append(dst, byte(e.ReceiptKind))
		dst = binary.BigEndian.AppendUint64(dst, e.By)
		dst = binary.BigEndian.AppendUint64(dst, e.Group)
		dst = append(dst, e.IDs...)
	case KindGroupMessage:
		dst = append(dst, e.ID[:]...)
		dst = binary.BigEndian.AppendUint64(dst, e.From)
		dst = binary.BigEndian.AppendUint64(dst, e.Group)
		dst = append(dst, e.Ref[:]...)
	case KindGroupEvent:
		dst = append(dst, byte(e.EventKind))
		dst = binary.BigEndian.AppendUint64(dst, e.Group)
		dst = binary.BigEndian.AppendUint64(dst, e.Actor)
		dst = append(append(dst, byte(len(e.Name))), e.Name...)
		dst = append(dst, e.Users...)
	}
	return dst
}

// DecodeEntry decodes an inbox value.
func DecodeEntry(seq uint64, v []byte, e *Entry) error {
	if len(v) < entryHeader {
		return fmt.Errorf("%w: %d-byte value", ErrCorrupt, len(v))
	}
	*e = Entry{Seq: seq, Kind: Kind(v[0]), Time: binary.BigEndian.Uint64(v[2:]), Size: uint32(len(v))}
	if v[1] != 0 {
		return fmt.Errorf("%w: unknown body codec %d", ErrCorrupt, v[1])
	}
	p := v[entryHeader:]
	switch e.Kind {
	case KindMessage:
		if len(p) < 32 {
			break
		}
		copy(e.ID[:], p)
		e.From = binary.BigEndian.Uint64(p[16:])
		e.Group = binary.BigEndian.Uint64(p[24:])
		e.Body = p[32:]
		return nil
	case KindGroupMessage:
		if len(p) != 44 {
			break
		}
		copy(e.ID[:], p)
		e.From = binary.BigEndian.Uint64(p[16:])
		e.Group = binary.BigEndian.Uint64(p[24:])
		copy(e.Ref[:], p[32:])
		return nil
	case KindReceipt:
		if len(p) < 17+16 || (len(p)-17)%16 != 0 {
			break
		}
		e.ReceiptKind = codec.ReceiptKind(p[0])
		e.By = binary.BigEndian.Uint64(p[1:])
		e.Group = binary.BigEndian.Uint64(p[9:])
		e.IDs = codec.IDList(p[17:])
		return nil
	case KindGroupEvent:
		if len(p) < 18 || len(p) < 18+int(p[17]) || (len(p)-18-int(p[17]))%8 != 0 {
			break
		}
		e.EventKind = codec.GroupEventKind(p[0])
		e.Group = binary.BigEndian.Uint64(p[1:])
		e.Actor = binary.BigEndian.Uint64(p[9:])
		n := int(p[17])
		e.Name = p[18 : 18+n]
		e.Users = codec.UserList(p[18+n:])
		return nil
	}
	return fmt.Errorf("%w: kind %d, %d bytes", ErrCorrupt, e.Kind, len(v))
}

// Acked is what acknowledging e needs to know.
func (e *Entry) Acked() Acked {
	return Acked{Seq: e.Seq, Kind: e.Kind, Time: e.Time, From: e.From, Group: e.Group, ID: e.ID, Ref: e.Ref, Size: e.Size}
}

// AppendFrame appends the frame that delivers e to its inbox's owner.
func (e *Entry) AppendFrame(dst []byte) []byte {
	switch e.Kind {
	case KindMessage, KindGroupMessage:
		return codec.AppendDeliver(dst, e.Seq, &e.ID, e.From, e.Group, e.Time, e.Body)
	case KindReceipt:
		return codec.AppendReceipt(dst, e.Seq, e.ReceiptKind, e.By, e.Group, e.Time, e.IDs)
	case KindGroupEvent:
		return (&codec.GroupEvent{Seq: e.Seq, Group: e.Group, Kind: e.EventKind, Actor: e.Actor,
			Time: e.Time, Name: e.Name, Users: e.Users}).Append(dst)
	}
	return dst
}

func inboxPrefix(user uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{store.PrefixInbox}, user)
}

func inboxKey(dst []byte, user, seq uint64) []byte {
	dst = append(dst, store.PrefixInbox)
	dst = binary.BigEndian.AppendUint64(dst, user)
	return binary.BigEndian.AppendUint64(dst, seq)
}

func expiryKey(dst []byte, hour uint32, user uint64) []byte {
	dst = append(dst, store.PrefixExpiry)
	dst = binary.BigEndian.AppendUint32(dst, hour)
	return binary.BigEndian.AppendUint64(dst, user)
}

func bodyKey(ref BodyRef, part byte) []byte {
	return append(append([]byte{store.PrefixBody}, ref[:]...), part)
}

func dedupKey(dst []byte, day uint32, sender uint64, id *codec.MsgID) []byte {
	dst = append(dst, store.PrefixDedup)
	dst = binary.BigEndian.AppendUint32(dst, day)
	dst = binary.BigEndian.AppendUint64(dst, sender)
	return append(dst, id[:]...)
}

// AppendWire appends e as another node reads it: seq, length, and the
// stored value, except that a group message whose body is at hand travels
// as a message naming its group (its DELIVER frame is the same), since
// the body it refers to is stored on this node only. It reports false
// (appending nothing) for a group message without its body.
func (e *Entry) AppendWire(dst []byte) ([]byte, bool) {
	w := *e
	if w.Kind == KindGroupMessage {
		if w.Body == nil {
			return dst, false
		}
		w.Kind = KindMessage
	}
	dst = binary.BigEndian.AppendUint64(dst, w.Seq)
	n := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst = w.encode(dst)
	binary.BigEndian.PutUint32(dst[n:], uint32(len(dst)-n-4))
	return dst, true
}

// DecodeWire reads one entry AppendWire wrote and returns the rest.
// The entry's slices point into src.
func DecodeWire(src []byte, e *Entry) ([]byte, error) {
	if len(src) < 12 {
		return nil, fmt.Errorf("%w: %d bytes left", ErrCorrupt, len(src))
	}
	seq, n := binary.BigEndian.Uint64(src), int(binary.BigEndian.Uint32(src[8:]))
	if len(src) < 12+n {
		return nil, fmt.Errorf("%w: entry of %d bytes in %d", ErrCorrupt, n, len(src)-12)
	}
	if err := DecodeEntry(seq, src[12:12+n], e); err != nil {
		return nil, err
	}
	return src[12+n:], nil
}
