package codec

// Subscribe asks for PRESENCE updates about Users; the server answers with
// one PRESENCE per user at once and then on every change.
type Subscribe struct {
	Users UserList
}

// Unsubscribe stops PRESENCE updates about Users.
type Unsubscribe struct {
	Users UserList
}

func (f *Subscribe) Type() Type                 { return TypeSubscribe }
func (f *Subscribe) Append(dst []byte) []byte   { return appendUserSet(dst, TypeSubscribe, f.Users) }
func (f *Subscribe) Decode(body []byte) error   { return decodeUserSet(body, TypeSubscribe, &f.Users) }
func (f *Unsubscribe) Type() Type               { return TypeUnsubscribe }
func (f *Unsubscribe) Append(dst []byte) []byte { return appendUserSet(dst, TypeUnsubscribe, f.Users) }
func (f *Unsubscribe) Decode(body []byte) error {
	return decodeUserSet(body, TypeUnsubscribe, &f.Users)
}

func appendUserSet(dst []byte, t Type, users UserList) []byte {
	n := users.Len()
	if n > MaxSubscribe {
		n = MaxSubscribe
	}
	dst, s := begin(dst, t)
	dst = append(dst, byte(n))
	dst = append(dst, users[:8*n]...)
	return end(dst, s)
}

func decodeUserSet(body []byte, t Type, users *UserList) error {
	r := reader{t: t, b: body}
	n := int(r.u8("count"))
	if r.err == nil && n == 0 {
		r.fail("empty user list")
	}
	*users = r.users(n)
	return r.done()
}

// PresenceState is a user's state as PRESENCE reports it.
type PresenceState uint8

const (
	PresenceOffline PresenceState = 0 // LastSeen says when the user was last online
	PresenceOnline  PresenceState = 1
	PresenceHidden  PresenceState = 2 // the user hides presence and last seen
)

func (s PresenceState) String() string {
	switch s {
	case PresenceOffline:
		return "offline"
	case PresenceOnline:
		return "online"
	case PresenceHidden:
		return "hidden"
	}
	return "unknown"
}

// Presence reports a subscribed user's state.
type Presence struct {
	User     uint64
	State    PresenceState
	LastSeen uint64 // unix milliseconds; 0 when online, hidden or never seen
}

func (f *Presence) Type() Type { return TypePresence }

func (f *Presence) Append(dst []byte) []byte {
	dst, s := begin(dst, TypePresence)
	dst = appendU64(dst, f.User)
	dst = append(dst, byte(f.State))
	dst = appendU64(dst, f.LastSeen)
	return end(dst, s)
}

func (f *Presence) Decode(body []byte) error {
	r := reader{t: TypePresence, b: body}
	f.User = r.u64("user")
	f.State = PresenceState(r.u8("state"))
	f.LastSeen = r.u64("last_seen")
	if r.err == nil && f.State > PresenceHidden {
		r.fail("unknown presence state")
	}
	return r.done()
}

// PrivacyFlags are the bits of PRIVACY.
type PrivacyFlags uint8

// PrivacyHideLastSeen makes subscribers see "hidden" instead of online state
// and last seen.
const PrivacyHideLastSeen PrivacyFlags = 1 << 0

// Privacy sets the user's privacy flags; they persist across sessions.
type Privacy struct {
	Flags PrivacyFlags
}

func (f *Privacy) Type() Type { return TypePrivacy }

func (f *Privacy) Append(dst []byte) []byte {
	dst, s := begin(dst, TypePrivacy)
	dst = append(dst, byte(f.Flags))
	return end(dst, s)
}

func (f *Privacy) Decode(body []byte) error {
	r := reader{t: TypePrivacy, b: body}
	f.Flags = PrivacyFlags(r.u8("flags"))
	return r.done()
}

// Valid reports whether only known bits are set. Decode accepts any bits,
// so that the server can answer ERROR 33 (invalid flags) as it does for
// SEND and TYPING, rather than close the connection.
func (f PrivacyFlags) Valid() bool { return f&^PrivacyHideLastSeen == 0 }
