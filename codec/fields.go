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

// The frame methods in frames_gen.go are chains of the field helpers below,
// one call a field in wire order: begin(dst, t).u64(x).str8(y).end() to
// encode, read(body, t).u64(&x, "x").str8(&y, "y").done() to decode. Every
// helper is small enough to inline, so a chain compiles to the code one
// would write out by hand and neither direction allocates.

// writer appends one frame. It is passed by value along the chain; start
// is where the frame's length prefix sits.
type writer struct {
	b     []byte
	start int
}

// begin appends a frame header with a placeholder length; end patches it.
func begin(dst []byte, t Type) writer {
	return writer{b: append(dst, 0, 0, 0, 0, byte(t)), start: len(dst)}
}

func (w writer) end() []byte {
	be.PutUint32(w.b[w.start:], uint32(len(w.b)-w.start-4))
	return w.b
}

func (w writer) u8(v uint8) writer   { w.b = append(w.b, v); return w }
func (w writer) u16(v uint16) writer { w.b = be.AppendUint16(w.b, v); return w }
func (w writer) u32(v uint32) writer { w.b = be.AppendUint32(w.b, v); return w }
func (w writer) u64(v uint64) writer { w.b = be.AppendUint64(w.b, v); return w }

func (w writer) flag(v bool) writer {
	if v {
		return w.u8(1)
	}
	return w.u8(0)
}

// zeroID stands in for a nil id (AppendError without a SEND).
var zeroID MsgID

func (w writer) id(id *MsgID) writer {
	if id == nil {
		id = &zeroID
	}
	w.b = append(w.b, id[:]...)
	return w
}

func (w writer) token(t *Token) writer { w.b = append(w.b, t[:]...); return w }

// str8 appends a str8; input longer than 255 bytes is cut (see Validate*).
func (w writer) str8(s []byte) writer {
	if len(s) > 255 {
		s = s[:255]
	}
	w.b = append(append(w.b, byte(len(s))), s...)
	return w
}

// text8 is str8 for a string.
func (w writer) text8(s string) writer {
	if len(s) > 255 {
		s = s[:255]
	}
	w.b = append(append(w.b, byte(len(s))), s...)
	return w
}

func (w writer) bytes16(s []byte) writer {
	if len(s) > 0xFFFF {
		s = s[:0xFFFF]
	}
	w.b = append(be.AppendUint16(w.b, uint16(len(s))), s...)
	return w
}

// reader walks a frame body. The first failure sticks: later reads store
// zero values and the caller checks the error once, in done. It lives on
// the caller's stack; only a failure allocates.
type reader struct {
	t   Type
	b   []byte
	off int
	err error
}

// read starts decoding body, a frame of type t.
func read(body []byte, t Type) *reader { return &reader{t: t, b: body} }

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

// check fails the frame when ok is false and every field read so far was
// whole; it runs after the fields, for rules that span them. Within a
// chain, Go orders the calls but not plain reads of variables, so ok must
// come from a call that reads the fields itself, such as within.
func (r *reader) check(ok bool, detail string) *reader {
	if r.err == nil && !ok {
		r.fail(detail)
	}
	return r
}

// within reports whether *v lies in [lo, hi]: an enum's defined values.
func within[T ~uint8](v *T, lo, hi T) bool { return *v >= lo && *v <= hi }

// done fails if bytes remain: version 1 frames have no optional tail.
func (r *reader) done() error {
	if r.err == nil && r.off != len(r.b) {
		r.fail(fmt.Sprintf("%d trailing bytes", len(r.b)-r.off))
	}
	return r.err
}

// fixed is takeSuffixed for a field of at most 32 bytes. After a failure
// it gives zeros, so that a decoder stores a zero value (and reads a zero
// length) without a branch of its own.
func (r *reader) fixed(n int, what, suffix string) []byte {
	if p := r.takeSuffixed(n, what, suffix); p != nil {
		return p
	}
	return zeros[:n]
}

var zeros [32]byte

func (r *reader) u8(v *uint8, what string) *reader    { *v = r.fixed(1, what, "")[0]; return r }
func (r *reader) u16(v *uint16, what string) *reader  { *v = be.Uint16(r.fixed(2, what, "")); return r }
func (r *reader) u32(v *uint32, what string) *reader  { *v = be.Uint32(r.fixed(4, what, "")); return r }
func (r *reader) u64(v *uint64, what string) *reader  { *v = be.Uint64(r.fixed(8, what, "")); return r }
func (r *reader) id(v *MsgID, what string) *reader    { *v = MsgID(r.fixed(16, what, "")); return r }
func (r *reader) token(v *Token, what string) *reader { *v = Token(r.fixed(32, what, "")); return r }

var be = binary.BigEndian

// flag reads a u8 that must be 0 or 1.
func (r *reader) flag(v *bool, what string) *reader {
	b := r.fixed(1, what, "")[0]
	if b > 1 {
		r.fail(what + " must be 0 or 1")
	}
	*v = b == 1
	return r
}

func (r *reader) str8(v *[]byte, what string) *reader {
	*v = r.take(int(r.fixed(1, what, " length")[0]), what)
	return r
}

func (r *reader) bytes16(v *[]byte, what string) *reader {
	*v = r.take(int(be.Uint16(r.fixed(2, what, " length"))), what)
	return r
}
