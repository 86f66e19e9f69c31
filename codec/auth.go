package codec

// Credentials is the body of REGISTER and LOGIN: a user name and a password.
type Credentials struct {
	Name     []byte
	Password []byte
}

// Register asks to create an account; a WELCOME answers it.
type Register struct{ Credentials }

// Login asks to open a session with a password; a WELCOME answers it.
type Login struct{ Credentials }

// Resume opens a session with a token from an earlier WELCOME.
type Resume struct {
	Token Token
}

// Welcome confirms authentication and describes the session.
type Welcome struct {
	User      uint64 // the authenticated user's id
	Token     Token  // present it in RESUME to reconnect without the password
	Keepalive uint16 // seconds; the server closes a connection silent for longer
	Window    uint16 // most deliveries the server sends before waiting for ACK
	MaxBody   uint32 // largest SEND body this server accepts
	Time      uint64 // server clock, unix milliseconds
}

// Logout revokes the session's token; the server then closes the connection.
type Logout struct{}

// Password changes the password, revokes every token of the user (other
// sessions are kicked) and answers with a WELCOME carrying a new token.
type Password struct {
	Old []byte
	New []byte
}

// Lookup resolves a user name to an id (User == 0) or an id to a name
// (Name empty). USER answers it; ERROR unknown user when there is none.
type Lookup struct {
	Req  uint32
	User uint64
	Name []byte
}

// User answers LOOKUP.
type User struct {
	Req  uint32
	User uint64
	Name []byte
}

// OK answers a request that has no other reply.
type OK struct {
	Req uint32
}
