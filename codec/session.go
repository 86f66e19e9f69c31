package codec

// Sessions asks for the user's sessions: one per token issued by
// REGISTER, LOGIN or PASSWORD and carried on by RESUME. SESSION_LIST
// answers.
type Sessions struct {
	Req uint32
}

// SessionFlags describe one entry of SESSION_LIST.
type SessionFlags uint8

const (
	// SessionCurrent marks the session of the connection that asked.
	SessionCurrent SessionFlags = 1 << 0
	// SessionOnline marks a session with a connection open now.
	SessionOnline SessionFlags = 1 << 1
)

// SessionInfo is one session: its id (stable across token rotation),
// when it began and was last seen (unix ms), the address it last came
// from, and the label its client gave it (SESSION_LABEL; empty if none).
type SessionInfo struct {
	Session  uint64
	Flags    SessionFlags
	Created  uint64
	LastSeen uint64
	Addr     []byte
	Label    []byte
}

// SessionList answers SESSIONS, most recently seen first.
type SessionList struct {
	Req      uint32
	Sessions []SessionInfo // decoding allocates this slice
}

// SessionRevoke ends one of the user's sessions: its token stops working
// and its connection, if open, gets KICKED reason KickRevoked. OK answers.
type SessionRevoke struct {
	Req     uint32
	Session uint64
}

// SessionLabel names the connection's own session (a device name), at
// most MaxLabel bytes of UTF-8. OK answers.
type SessionLabel struct {
	Req   uint32
	Label []byte
}

// MaxLabel is the longest session label.
const MaxLabel = 64
