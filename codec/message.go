package codec

// SendFlags qualify a SEND (and the flags of TYPING).
type SendFlags uint8

const (
	// FlagDup marks a resend of an id the client sent before without seeing
	// its SENT. The server then checks its dedup window and answers SENT again
	// instead of storing a second copy.
	FlagDup SendFlags = 1 << 0
	// FlagGroup marks To as a group id rather than a user id.
	FlagGroup SendFlags = 1 << 1

	sendFlagsKnown = FlagDup | FlagGroup
)

// Valid reports whether only defined flag bits are set.
func (f SendFlags) Valid() bool { return f&^sendFlagsKnown == 0 }

// Send submits a message. SENT answers it once the message is durable;
// ERROR with the same id answers it when refused.
type Send struct {
	ID    MsgID
	Flags SendFlags
	To    uint64
	Body  []byte
}

func (f *Send) Type() Type { return TypeSend }

func (f *Send) Append(dst []byte) []byte {
	dst, s := begin(dst, TypeSend)
	dst = append(dst, f.ID[:]...)
	dst = append(dst, byte(f.Flags))
	dst = appendU64(dst, f.To)
	dst = appendBytes16(dst, f.Body)
	return end(dst, s)
}

func (f *Send) Decode(body []byte) error {
	r := reader{t: TypeSend, b: body}
	f.ID = r.id("id")
	f.Flags = SendFlags(r.u8("flags"))
	f.To = r.u64("to")
	f.Body = r.bytes16("body")
	return r.done()
}

// Sent acknowledges a SEND: the message is durable and will be delivered.
type Sent struct {
	ID   MsgID
	Time uint64 // when the server accepted it, unix milliseconds
}

func (f *Sent) Type() Type { return TypeSent }

func (f *Sent) Append(dst []byte) []byte {
	dst, s := begin(dst, TypeSent)
	dst = append(dst, f.ID[:]...)
	dst = appendU64(dst, f.Time)
	return end(dst, s)
}

func (f *Sent) Decode(body []byte) error {
	r := reader{t: TypeSent, b: body}
	f.ID = r.id("id")
	f.Time = r.u64("time")
	return r.done()
}

// Deliver carries a message from the recipient's inbox. Seq orders the
// inbox; ACK it when the message is safely stored on the client.
type Deliver struct {
	Seq   uint64
	ID    MsgID
	From  uint64
	Group uint64 // 0 for a one-to-one message
	Time  uint64 // when the server accepted it, unix milliseconds
	Body  []byte
}

func (f *Deliver) Type() Type { return TypeDeliver }

// AppendDeliver appends a DELIVER frame without building a Deliver value.
func AppendDeliver(dst []byte, seq uint64, id *MsgID, from, group, time uint64, body []byte) []byte {
	dst, s := begin(dst, TypeDeliver)
	dst = appendU64(dst, seq)
	dst = append(dst, id[:]...)
	dst = appendU64(dst, from)
	dst = appendU64(dst, group)
	dst = appendU64(dst, time)
	dst = appendBytes16(dst, body)
	return end(dst, s)
}

func (f *Deliver) Append(dst []byte) []byte {
	return AppendDeliver(dst, f.Seq, &f.ID, f.From, f.Group, f.Time, f.Body)
}

func (f *Deliver) Decode(body []byte) error {
	r := reader{t: TypeDeliver, b: body}
	f.Seq = r.u64("seq")
	f.ID = r.id("id")
	f.From = r.u64("from")
	f.Group = r.u64("group")
	f.Time = r.u64("time")
	f.Body = r.bytes16("body")
	return r.done()
}

// Ack acknowledges every inbox entry (DELIVER, RECEIPT, GROUP_EVENT) with a
// sequence number up to and including Seq. The server deletes them.
type Ack struct {
	Seq uint64
}

func (f *Ack) Type() Type { return TypeAck }

func (f *Ack) Append(dst []byte) []byte {
	dst, s := begin(dst, TypeAck)
	dst = appendU64(dst, f.Seq)
	return end(dst, s)
}

func (f *Ack) Decode(body []byte) error {
	r := reader{t: TypeAck, b: body}
	f.Seq = r.u64("seq")
	return r.done()
}

// Read reports that messages from To (in Group, or one-to-one when Group is
// 0) were read; To receives a RECEIPT of kind read.
type Read struct {
	To    uint64
	Group uint64
	IDs   IDList
}

func (f *Read) Type() Type { return TypeRead }

func (f *Read) Append(dst []byte) []byte {
	dst, s := begin(dst, TypeRead)
	dst = appendU64(dst, f.To)
	dst = appendU64(dst, f.Group)
	dst = appendIDs(dst, f.IDs)
	return end(dst, s)
}

func (f *Read) Decode(body []byte) error {
	r := reader{t: TypeRead, b: body}
	f.To = r.u64("to")
	f.Group = r.u64("group")
	f.IDs = decodeIDs(&r)
	return r.done()
}

// ReceiptKind says what a RECEIPT reports.
type ReceiptKind uint8

const (
	ReceiptDelivered ReceiptKind = 1 // the recipient's client acknowledged the messages
	ReceiptRead      ReceiptKind = 2 // the recipient read them
	// ReceiptExpired: the messages expired unread in the recipient's inbox
	// (after the server's TTL) and will never be delivered.
	ReceiptExpired ReceiptKind = 3
)

func (k ReceiptKind) String() string {
	switch k {
	case ReceiptDelivered:
		return "delivered"
	case ReceiptRead:
		return "read"
	case ReceiptExpired:
		return "expired"
	}
	return "unknown"
}

// Receipt tells a sender that By received or read the listed messages. It
// is an inbox entry: ACK its Seq like a DELIVER.
type Receipt struct {
	Seq   uint64
	Kind  ReceiptKind
	By    uint64
	Group uint64
	Time  uint64
	IDs   IDList
}

func (f *Receipt) Type() Type { return TypeReceipt }

// AppendReceipt appends a RECEIPT frame without building a Receipt value.
func AppendReceipt(dst []byte, seq uint64, kind ReceiptKind, by, group, time uint64, ids IDList) []byte {
	dst, s := begin(dst, TypeReceipt)
	dst = appendU64(dst, seq)
	dst = append(dst, byte(kind))
	dst = appendU64(dst, by)
	dst = appendU64(dst, group)
	dst = appendU64(dst, time)
	dst = appendIDs(dst, ids)
	return end(dst, s)
}

func (f *Receipt) Append(dst []byte) []byte {
	return AppendReceipt(dst, f.Seq, f.Kind, f.By, f.Group, f.Time, f.IDs)
}

func (f *Receipt) Decode(body []byte) error {
	r := reader{t: TypeReceipt, b: body}
	f.Seq = r.u64("seq")
	f.Kind = ReceiptKind(r.u8("kind"))
	f.By = r.u64("by")
	f.Group = r.u64("group")
	f.Time = r.u64("time")
	f.IDs = decodeIDs(&r)
	if r.err == nil && f.Kind != ReceiptDelivered && f.Kind != ReceiptRead && f.Kind != ReceiptExpired {
		r.fail("unknown receipt kind")
	}
	return r.done()
}

// appendIDs writes count u8 then the ids; at most MaxIDs are written.
func appendIDs(dst []byte, ids IDList) []byte {
	n := ids.Len()
	if n > MaxIDs {
		n = MaxIDs
	}
	dst = append(dst, byte(n))
	return append(dst, ids[:16*n]...)
}

func decodeIDs(r *reader) IDList {
	n := int(r.u8("count"))
	if r.err == nil && n == 0 {
		r.fail("empty id list")
	}
	return r.ids(n)
}

// TypingState is the state carried by TYPING and IS_TYPING.
type TypingState uint8

const (
	TypingStopped TypingState = 0
	TypingStarted TypingState = 1
)

// Typing tells To (a user, or a group with FlagGroup) that the sender is
// typing. It is never stored: offline recipients miss it.
type Typing struct {
	To    uint64
	Flags SendFlags // only FlagGroup is meaningful
	State TypingState
}

func (f *Typing) Type() Type { return TypeTyping }

func (f *Typing) Append(dst []byte) []byte {
	dst, s := begin(dst, TypeTyping)
	dst = appendU64(dst, f.To)
	dst = append(dst, byte(f.Flags), byte(f.State))
	return end(dst, s)
}

func (f *Typing) Decode(body []byte) error {
	r := reader{t: TypeTyping, b: body}
	f.To = r.u64("to")
	f.Flags = SendFlags(r.u8("flags"))
	f.State = TypingState(r.u8("state"))
	return r.done()
}

// IsTyping relays a TYPING to an online recipient.
type IsTyping struct {
	From  uint64
	Group uint64
	State TypingState
}

func (f *IsTyping) Type() Type { return TypeIsTyping }

func (f *IsTyping) Append(dst []byte) []byte {
	dst, s := begin(dst, TypeIsTyping)
	dst = appendU64(dst, f.From)
	dst = appendU64(dst, f.Group)
	dst = append(dst, byte(f.State))
	return end(dst, s)
}

func (f *IsTyping) Decode(body []byte) error {
	r := reader{t: TypeIsTyping, b: body}
	f.From = r.u64("from")
	f.Group = r.u64("group")
	f.State = TypingState(r.u8("state"))
	return r.done()
}
