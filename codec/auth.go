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

func (f *Register) Type() Type               { return TypeRegister }
func (f *Register) Append(dst []byte) []byte { return f.Credentials.append(dst, TypeRegister) }
func (f *Register) Decode(body []byte) error { return f.Credentials.decode(body, TypeRegister) }
func (f *Login) Type() Type                  { return TypeLogin }
func (f *Login) Append(dst []byte) []byte    { return f.Credentials.append(dst, TypeLogin) }
func (f *Login) Decode(body []byte) error    { return f.Credentials.decode(body, TypeLogin) }
func (c *Credentials) append(dst []byte, t Type) []byte {
	dst, s := begin(dst, t)
	dst = appendStr8(dst, c.Name)
	dst = appendStr8(dst, c.Password)
	return end(dst, s)
}

func (c *Credentials) decode(body []byte, t Type) error {
	r := reader{t: t, b: body}
	c.Name = r.str8("name")
	c.Password = r.str8("password")
	return r.done()
}

// Resume opens a session with a token from an earlier WELCOME.
type Resume struct {
	Token Token
}

func (f *Resume) Type() Type { return TypeResume }

func (f *Resume) Append(dst []byte) []byte {
	dst, s := begin(dst, TypeResume)
	dst = append(dst, f.Token[:]...)
	return end(dst, s)
}

func (f *Resume) Decode(body []byte) error {
	r := reader{t: TypeResume, b: body}
	copy(f.Token[:], r.take(32, "token"))
	return r.done()
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

func (f *Welcome) Type() Type { return TypeWelcome }

func (f *Welcome) Append(dst []byte) []byte {
	dst, s := begin(dst, TypeWelcome)
	dst = appendU64(dst, f.User)
	dst = append(dst, f.Token[:]...)
	dst = appendU16(dst, f.Keepalive)
	dst = appendU16(dst, f.Window)
	dst = appendU32(dst, f.MaxBody)
	dst = appendU64(dst, f.Time)
	return end(dst, s)
}

func (f *Welcome) Decode(body []byte) error {
	r := reader{t: TypeWelcome, b: body}
	f.User = r.u64("user")
	copy(f.Token[:], r.take(32, "token"))
	f.Keepalive = r.u16("keepalive")
	f.Window = r.u16("window")
	f.MaxBody = r.u32("max_body")
	f.Time = r.u64("time")
	return r.done()
}

// Logout revokes the session's token; the server then closes the connection.
type Logout struct{}

func (f *Logout) Type() Type { return TypeLogout }

func (f *Logout) Append(dst []byte) []byte {
	dst, s := begin(dst, TypeLogout)
	return end(dst, s)
}

func (f *Logout) Decode(body []byte) error {
	r := reader{t: TypeLogout, b: body}
	return r.done()
}

// Password changes the password, revokes every token of the user (other
// sessions are kicked) and answers with a WELCOME carrying a new token.
type Password struct {
	Old []byte
	New []byte
}

func (f *Password) Type() Type { return TypePassword }

func (f *Password) Append(dst []byte) []byte {
	dst, s := begin(dst, TypePassword)
	dst = appendStr8(dst, f.Old)
	dst = appendStr8(dst, f.New)
	return end(dst, s)
}

func (f *Password) Decode(body []byte) error {
	r := reader{t: TypePassword, b: body}
	f.Old = r.str8("old password")
	f.New = r.str8("new password")
	return r.done()
}

// Lookup resolves a user name to an id (User == 0) or an id to a name
// (Name empty). USER answers it; ERROR unknown user when there is none.
type Lookup struct {
	Req  uint32
	User uint64
	Name []byte
}

func (f *Lookup) Type() Type { return TypeLookup }

func (f *Lookup) Append(dst []byte) []byte {
	dst, s := begin(dst, TypeLookup)
	dst = appendU32(dst, f.Req)
	dst = appendU64(dst, f.User)
	dst = appendStr8(dst, f.Name)
	return end(dst, s)
}

func (f *Lookup) Decode(body []byte) error {
	r := reader{t: TypeLookup, b: body}
	f.Req = r.u32("req")
	f.User = r.u64("user")
	f.Name = r.str8("name")
	return r.done()
}

// User answers LOOKUP.
type User struct {
	Req  uint32
	User uint64
	Name []byte
}

func (f *User) Type() Type { return TypeUser }

func (f *User) Append(dst []byte) []byte {
	dst, s := begin(dst, TypeUser)
	dst = appendU32(dst, f.Req)
	dst = appendU64(dst, f.User)
	dst = appendStr8(dst, f.Name)
	return end(dst, s)
}

func (f *User) Decode(body []byte) error {
	r := reader{t: TypeUser, b: body}
	f.Req = r.u32("req")
	f.User = r.u64("user")
	f.Name = r.str8("name")
	return r.done()
}

// OK answers a request that has no other reply.
type OK struct {
	Req uint32
}

func (f *OK) Type() Type { return TypeOK }

func (f *OK) Append(dst []byte) []byte {
	dst, s := begin(dst, TypeOK)
	dst = appendU32(dst, f.Req)
	return end(dst, s)
}

func (f *OK) Decode(body []byte) error {
	r := reader{t: TypeOK, b: body}
	f.Req = r.u32("req")
	return r.done()
}
