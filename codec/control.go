package codec

// Ping asks the peer for a PONG with the same nonce. Either side may send
// it; a client pings to keep an idle connection inside the keepalive window.
type Ping struct {
	Nonce uint64
}

// Pong answers PING.
type Pong struct {
	Nonce uint64
}

// GoawayReason says why a server sent GOAWAY.
type GoawayReason uint8

const (
	GoawayShutdown   GoawayReason = 1 // the server is stopping or restarting
	GoawayOverloaded GoawayReason = 2 // memory or accept rate above the watermark
	GoawayCapacity   GoawayReason = 3 // the connection limit is reached
	GoawayMoved      GoawayReason = 4 // the user's home moved to another node (a cluster): reconnect now
)

func (r GoawayReason) String() string {
	switch r {
	case GoawayShutdown:
		return "shutdown"
	case GoawayOverloaded:
		return "overloaded"
	case GoawayCapacity:
		return "at capacity"
	case GoawayMoved:
		return "home moved"
	}
	return "unknown"
}

// Goaway tells the client to disconnect and reconnect no sooner than
// RetryAfter milliseconds, plus random jitter. The server closes next.
type Goaway struct {
	RetryAfter uint32
	Reason     GoawayReason
}

// KickReason says why a session was ended by the server.
type KickReason uint8

const (
	KickElsewhere    KickReason = 1 // the same user logged in on another connection
	KickLoggedOut    KickReason = 2 // the session's token was revoked by LOGOUT
	KickPassword     KickReason = 3 // the password changed; every token was revoked
	KickSlowConsumer KickReason = 4 // the client did not read its deliveries in time
	KickIdle         KickReason = 5 // nothing arrived within the keepalive window
	KickRevoked      KickReason = 6 // the session was revoked by SESSION_REVOKE; its token is dead
	// KickDeleted ends the session of an account ACCOUNT_DELETE deleted.
	KickDeleted KickReason = 7
)

func (r KickReason) String() string {
	switch r {
	case KickElsewhere:
		return "logged in elsewhere"
	case KickLoggedOut:
		return "logged out"
	case KickPassword:
		return "password changed"
	case KickSlowConsumer:
		return "slow consumer"
	case KickIdle:
		return "idle"
	case KickRevoked:
		return "session revoked"
	case KickDeleted:
		return "account deleted"
	}
	return "unknown"
}

// Kicked tells a client its session ended; the server closes next. A client
// must not reconnect automatically after KickElsewhere.
type Kicked struct {
	Reason KickReason
}

// Error reports a failure. Req names the failed request (0 when none) and ID
// the failed SEND (zero when none). Detail is human-readable text; clients
// act on Code.
type Error struct {
	Code   Code
	Req    uint32
	ID     MsgID
	Detail []byte
}

// AppendError appends an ERROR frame without building an Error value.
func AppendError(dst []byte, code Code, req uint32, id *MsgID, detail string) []byte {
	return begin(dst, TypeError).u16(uint16(code)).u32(req).id(id).text8(detail).end()
}

func (f *Error) Append(dst []byte) []byte {
	return AppendError(dst, f.Code, f.Req, &f.ID, string(f.Detail))
}

func (f *Error) Error() string {
	if len(f.Detail) > 0 {
		return "chatd: " + f.Code.String() + ": " + string(f.Detail)
	}
	return "chatd: " + f.Code.String()
}

// OptionFlags are the bits of OPTIONS: what a connection asks of the
// server beyond version 1's first form.
type OptionFlags uint32

// OptionSentDelivered asks for SENT_DELIVERED, in place of a delivered
// RECEIPT and a SENT, for messages the recipient acknowledged live.
const OptionSentDelivered OptionFlags = 1 << 0

const optionFlagsKnown = OptionSentDelivered

// Valid reports whether only known bits are set. Decode accepts any bits,
// so that the server can answer ERROR 33 (invalid flags), which tells a
// client the option is not served, rather than close the connection.
func (f OptionFlags) Valid() bool { return f&^optionFlagsKnown == 0 }

// Options sets the connection's options, replacing those set before; OK
// answers it. They last as long as the connection.
type Options struct {
	Req   uint32
	Flags OptionFlags
}
