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

// PrivacyFlags are the bits of PRIVACY.
type PrivacyFlags uint8

// PrivacyHideLastSeen makes subscribers see "hidden" instead of online state
// and last seen.
const PrivacyHideLastSeen PrivacyFlags = 1 << 0

// Privacy sets the user's privacy flags; they persist across sessions.
type Privacy struct {
	Flags PrivacyFlags
}

// Valid reports whether only known bits are set. Decode accepts any bits,
// so that the server can answer ERROR 33 (invalid flags) as it does for
// SEND and TYPING, rather than close the connection.
func (f PrivacyFlags) Valid() bool { return f&^PrivacyHideLastSeen == 0 }
