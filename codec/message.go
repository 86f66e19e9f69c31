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

// Sent acknowledges a SEND: the message is durable and will be delivered.
type Sent struct {
	ID   MsgID
	Time uint64 // when the server accepted it, unix milliseconds
}

// SentDelivered is SENT and the delivered RECEIPT of a message in one
// frame, sent instead of both to a connection that set
// OptionSentDelivered, for a message whose recipient acknowledged it live
// (before it was stored). It is no inbox entry: no seq, no ACK.
type SentDelivered struct {
	ID        MsgID
	Time      uint64 // as SENT's: the time in the recipient's DELIVER, unix ms
	Delivered uint64 // when the recipient's ACK arrived, unix ms (the receipt's time)
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

// AppendDeliver appends a DELIVER frame without building a Deliver value.
func AppendDeliver(dst []byte, seq uint64, id *MsgID, from, group, time uint64, body []byte) []byte {
	return begin(dst, TypeDeliver).u64(seq).id(id).u64(from).u64(group).u64(time).bytes16(body).end()
}

func (f *Deliver) Append(dst []byte) []byte {
	return AppendDeliver(dst, f.Seq, &f.ID, f.From, f.Group, f.Time, f.Body)
}

// Ack acknowledges every inbox entry (DELIVER, RECEIPT, GROUP_EVENT) with a
// sequence number up to and including Seq. The server deletes them.
type Ack struct {
	Seq uint64
}

// Read reports that messages from To (in Group, or one-to-one when Group is
// 0) were read; To receives a RECEIPT of kind read.
type Read struct {
	To    uint64
	Group uint64
	IDs   IDList
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

// AppendReceipt appends a RECEIPT frame without building a Receipt value.
func AppendReceipt(dst []byte, seq uint64, kind ReceiptKind, by, group, time uint64, ids IDList) []byte {
	return begin(dst, TypeReceipt).u64(seq).u8(uint8(kind)).u64(by).u64(group).u64(time).ids(ids).end()
}

func (f *Receipt) Append(dst []byte) []byte {
	return AppendReceipt(dst, f.Seq, f.Kind, f.By, f.Group, f.Time, f.IDs)
}

// appendIDs writes count u8 then the ids; at most MaxIDs are written.

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

// IsTyping relays a TYPING to an online recipient.
type IsTyping struct {
	From  uint64
	Group uint64
	State TypingState
}
