package codec

import "fmt"

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

// New returns an empty frame of type t, or nil for an unknown type.
func New(t Type) Frame {
	switch t {
	case TypeRegister:
		return new(Register)
	case TypeLogin:
		return new(Login)
	case TypeResume:
		return new(Resume)
	case TypeWelcome:
		return new(Welcome)
	case TypeLogout:
		return new(Logout)
	case TypePassword:
		return new(Password)
	case TypeLookup:
		return new(Lookup)
	case TypeUser:
		return new(User)
	case TypeOK:
		return new(OK)
	case TypeSend:
		return new(Send)
	case TypeSent:
		return new(Sent)
	case TypeDeliver:
		return new(Deliver)
	case TypeAck:
		return new(Ack)
	case TypeRead:
		return new(Read)
	case TypeReceipt:
		return new(Receipt)
	case TypeTyping:
		return new(Typing)
	case TypeIsTyping:
		return new(IsTyping)
	case TypeSubscribe:
		return new(Subscribe)
	case TypeUnsubscribe:
		return new(Unsubscribe)
	case TypePresence:
		return new(Presence)
	case TypePrivacy:
		return new(Privacy)
	case TypeGroupCreate:
		return new(GroupCreate)
	case TypeGroupAdd:
		return new(GroupAdd)
	case TypeGroupRemove:
		return new(GroupRemove)
	case TypeGroupLeave:
		return new(GroupLeave)
	case TypeGroupRename:
		return new(GroupRename)
	case TypeGroupAdmin:
		return new(GroupAdmin)
	case TypeGroupGet:
		return new(GroupGet)
	case TypeGroupList:
		return new(GroupList)
	case TypeGroupInfo:
		return new(GroupInfo)
	case TypeGroups:
		return new(Groups)
	case TypeGroupEvent:
		return new(GroupEvent)
	case TypePing:
		return new(Ping)
	case TypePong:
		return new(Pong)
	case TypeGoaway:
		return new(Goaway)
	case TypeKicked:
		return new(Kicked)
	case TypeError:
		return new(Error)
	}
	return nil
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
	case TypeWelcome, TypeUser, TypeOK, TypeSent, TypeDeliver, TypeReceipt, TypeIsTyping,
		TypePresence, TypeGroupInfo, TypeGroups, TypeGroupEvent, TypeGoaway, TypeKicked, TypeError:
		return false
	}
	return t.Known()
}
