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

func (f *Ping) Type() Type               { return TypePing }
func (f *Ping) Append(dst []byte) []byte { return appendNonce(dst, TypePing, f.Nonce) }
func (f *Ping) Decode(body []byte) error { return decodeNonce(body, TypePing, &f.Nonce) }
func (f *Pong) Type() Type               { return TypePong }
func (f *Pong) Append(dst []byte) []byte { return appendNonce(dst, TypePong, f.Nonce) }
func (f *Pong) Decode(body []byte) error { return decodeNonce(body, TypePong, &f.Nonce) }

func appendNonce(dst []byte, t Type, nonce uint64) []byte {
	dst, s := begin(dst, t)
	dst = appendU64(dst, nonce)
	return end(dst, s)
}

func decodeNonce(body []byte, t Type, nonce *uint64) error {
	r := reader{t: t, b: body}
	*nonce = r.u64("nonce")
	return r.done()
}

// GoawayReason says why a server sent GOAWAY.
type GoawayReason uint8

const (
	GoawayShutdown   GoawayReason = 1 // the server is stopping or restarting
	GoawayOverloaded GoawayReason = 2 // memory or accept rate above the watermark
	GoawayCapacity   GoawayReason = 3 // the connection limit is reached
)

func (r GoawayReason) String() string {
	switch r {
	case GoawayShutdown:
		return "shutdown"
	case GoawayOverloaded:
		return "overloaded"
	case GoawayCapacity:
		return "at capacity"
	}
	return "unknown"
}

// Goaway tells the client to disconnect and reconnect no sooner than
// RetryAfter milliseconds, plus random jitter. The server closes next.
type Goaway struct {
	RetryAfter uint32
	Reason     GoawayReason
}

func (f *Goaway) Type() Type { return TypeGoaway }

func (f *Goaway) Append(dst []byte) []byte {
	dst, s := begin(dst, TypeGoaway)
	dst = appendU32(dst, f.RetryAfter)
	dst = append(dst, byte(f.Reason))
	return end(dst, s)
}

func (f *Goaway) Decode(body []byte) error {
	r := reader{t: TypeGoaway, b: body}
	f.RetryAfter = r.u32("retry_after")
	f.Reason = GoawayReason(r.u8("reason"))
	return r.done()
}

// KickReason says why a session was ended by the server.
type KickReason uint8

const (
	KickElsewhere    KickReason = 1 // the same user logged in on another connection
	KickLoggedOut    KickReason = 2 // the session's token was revoked by LOGOUT
	KickPassword     KickReason = 3 // the password changed; every token was revoked
	KickSlowConsumer KickReason = 4 // the client did not read its deliveries in time
	KickIdle         KickReason = 5 // nothing arrived within the keepalive window
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
	}
	return "unknown"
}

// Kicked tells a client its session ended; the server closes next. A client
// must not reconnect automatically after KickElsewhere.
type Kicked struct {
	Reason KickReason
}

func (f *Kicked) Type() Type { return TypeKicked }

func (f *Kicked) Append(dst []byte) []byte {
	dst, s := begin(dst, TypeKicked)
	dst = append(dst, byte(f.Reason))
	return end(dst, s)
}

func (f *Kicked) Decode(body []byte) error {
	r := reader{t: TypeKicked, b: body}
	f.Reason = KickReason(r.u8("reason"))
	return r.done()
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

func (f *Error) Type() Type { return TypeError }

// AppendError appends an ERROR frame without building an Error value.
func AppendError(dst []byte, code Code, req uint32, id *MsgID, detail string) []byte {
	dst, s := begin(dst, TypeError)
	dst = appendU16(dst, uint16(code))
	dst = appendU32(dst, req)
	if id != nil {
		dst = append(dst, id[:]...)
	} else {
		dst = append(dst, make([]byte, 16)...)
	}
	if len(detail) > 255 {
		detail = detail[:255]
	}
	dst = append(append(dst, byte(len(detail))), detail...)
	return end(dst, s)
}

func (f *Error) Append(dst []byte) []byte {
	return AppendError(dst, f.Code, f.Req, &f.ID, string(f.Detail))
}

func (f *Error) Decode(body []byte) error {
	r := reader{t: TypeError, b: body}
	f.Code = Code(r.u16("code"))
	f.Req = r.u32("req")
	f.ID = r.id("id")
	f.Detail = r.str8("detail")
	return r.done()
}

func (f *Error) Error() string {
	if len(f.Detail) > 0 {
		return "chatd: " + f.Code.String() + ": " + string(f.Detail)
	}
	return "chatd: " + f.Code.String()
}
