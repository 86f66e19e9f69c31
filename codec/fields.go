package codec

import (
	"encoding/binary"
	"fmt"
)

// MsgID is a message id: 16 bytes chosen by the sender, unique per sender.
// Resending a message with the same id is idempotent.
type MsgID [16]byte

// Token is a session token returned by WELCOME and presented by RESUME.
type Token [32]byte

func (id MsgID) String() string { return fmt.Sprintf("%x", id[:]) }

// reader walks a frame body. The first failure sticks: later reads return
// zero values and the caller checks err once at the end. It lives on the
// caller's stack; only a failure allocates.
type reader struct {
	t   Type
	b   []byte
	off int
	err error
}

func (r *reader) fail(detail string) {
	if r.err == nil {
		r.err = &FrameError{Type: r.t, Offset: r.off, Detail: detail, Err: ErrMalformed}
	}
}

func (r *reader) take(n int, what string) []byte { return r.takeSuffixed(n, what, "") }

// takeSuffixed is take for a field named what+suffix; the name is only
// built when it is needed, so decoding does not allocate.
func (r *reader) takeSuffixed(n int, what, suffix string) []byte {
	if r.err != nil {
		return nil
	}
	if n > len(r.b)-r.off {
		r.fail("truncated " + what + suffix)
		return nil
	}
	if fieldTrace != nil {
		fieldTrace(what+suffix, r.off, n)
	}
	p := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return p
}

// fieldTrace, when set by a test, sees every field a decoder reads. The
// test that renders PROTOCOL.md's annotated vectors uses it; it is nil in
// every other program.
var fieldTrace func(what string, off, n int)

func (r *reader) u8(what string) uint8 {
	if p := r.take(1, what); p != nil {
		return p[0]
	}
	return 0
}

func (r *reader) u16(what string) uint16 {
	if p := r.take(2, what); p != nil {
		return binary.BigEndian.Uint16(p)
	}
	return 0
}

func (r *reader) u32(what string) uint32 {
	if p := r.take(4, what); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}

func (r *reader) u64(what string) uint64 {
	if p := r.take(8, what); p != nil {
		return binary.BigEndian.Uint64(p)
	}
	return 0
}

func (r *reader) id(what string) (id MsgID) {
	if p := r.take(16, what); p != nil {
		copy(id[:], p)
	}
	return id
}

func (r *reader) str8(what string) []byte {
	var n int
	if p := r.takeSuffixed(1, what, " length"); p != nil {
		n = int(p[0])
	}
	return r.take(n, what)
}

func (r *reader) bytes16(what string) []byte {
	var n int
	if p := r.takeSuffixed(2, what, " length"); p != nil {
		n = int(binary.BigEndian.Uint16(p))
	}
	return r.take(n, what)
}

// ids reads count message ids and returns them as one aliased slice of
// 16*count bytes (see IDList).
func (r *reader) ids(count int) IDList {
	return IDList(r.take(16*count, "message ids"))
}

// users reads count user ids as one aliased slice of 8*count bytes.
func (r *reader) users(count int) UserList {
	return UserList(r.take(8*count, "user ids"))
}

// done fails if bytes remain: version 1 frames have no optional tail.
func (r *reader) done() error {
	if r.err == nil && r.off != len(r.b) {
		r.fail(fmt.Sprintf("%d trailing bytes", len(r.b)-r.off))
	}
	return r.err
}

func appendU16(b []byte, v uint16) []byte { return binary.BigEndian.AppendUint16(b, v) }
func appendU32(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }
func appendU64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }

// appendStr8 appends a str8; input longer than 255 bytes is cut (see Validate*).
func appendStr8(b, s []byte) []byte {
	if len(s) > 255 {
		s = s[:255]
	}
	return append(append(b, byte(len(s))), s...)
}

func appendBytes16(b, s []byte) []byte {
	if len(s) > 0xFFFF {
		s = s[:0xFFFF]
	}
	return append(appendU16(b, uint16(len(s))), s...)
}

// IDList is a packed list of message ids, 16 bytes each, as on the wire.
// A decoded IDList aliases the frame.
type IDList []byte

// Len returns the number of ids.
func (l IDList) Len() int { return len(l) / 16 }

// At returns the i'th id.
func (l IDList) At(i int) (id MsgID) {
	copy(id[:], l[16*i:16*i+16])
	return id
}

// AppendID appends one id to the list.
func (l IDList) AppendID(id MsgID) IDList { return append(l, id[:]...) }

// UserList is a packed list of user (or group) ids, 8 bytes each.
type UserList []byte

// Len returns the number of ids.
func (l UserList) Len() int { return len(l) / 8 }

// At returns the i'th id.
func (l UserList) At(i int) uint64 { return binary.BigEndian.Uint64(l[8*i:]) }

// AppendUser appends one id to the list.
func (l UserList) AppendUser(u uint64) UserList { return appendU64(l, u) }

// Users builds a UserList from ids (allocates; for clients and tests).
func Users(ids ...uint64) UserList {
	l := make(UserList, 0, 8*len(ids))
	for _, u := range ids {
		l = l.AppendUser(u)
	}
	return l
}
