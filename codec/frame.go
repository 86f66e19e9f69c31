package codec

import "fmt"

//go:generate go run gen.go

// Frame is implemented by every frame type's struct. Hot paths call the
// concrete types' methods directly; the interface serves clients, tools
// and tests.
type Frame interface {
	Type() Type
	// Append appends the whole frame, header included.
	Append(dst []byte) []byte
	// Decode parses a body (the bytes after the type byte). Slices in the
	// frame alias body.
	Decode(body []byte) error
}

// DecodeBody decodes a body of type t into a new frame.
func DecodeBody(t Type, body []byte) (Frame, error) {
	f := New(t)
	if f == nil {
		return nil, &FrameError{Type: t, Offset: -1, Detail: fmt.Sprintf("type 0x%02x", uint8(t)), Err: ErrUnknownType}
	}
	if err := f.Decode(body); err != nil {
		return nil, err
	}
	return f, nil
}

// Decode decodes one whole frame (header included) that must fill b exactly.
func Decode(b []byte) (Frame, error) {
	t, body, rest, ok, err := Split(b, MaxLen)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, &FrameError{Offset: -1, Detail: "incomplete frame", Err: ErrMalformed}
	}
	if len(rest) != 0 {
		return nil, &FrameError{Type: t, Offset: -1, Detail: "bytes after frame", Err: ErrMalformed}
	}
	return DecodeBody(t, body)
}

// FromClient reports whether clients may send frames of type t.
func (t Type) FromClient() bool {
	switch t {
	case TypeWelcome, TypeUser, TypeOK, TypeSent, TypeSentDelivered, TypeDeliver, TypeReceipt, TypeIsTyping,
		TypePresence, TypeGroupInfo, TypeGroups, TypeGroupEvent, TypeList, TypePushSubs, TypeSessionList, TypeGoaway, TypeKicked, TypeError,
		TypeKeysCounts, TypeKeysBundle, TypeKeysLow, TypeIdentityChanged:
		return false
	case TypeKeyRotate:
		return false
	}
	return t.Known()
}
