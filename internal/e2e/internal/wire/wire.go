// Package wire reads the big-endian, length-prefixed byte layouts that the
// e2e packages marshal (documented in ../../ENVELOPE.md).
//
// A Reader remembers its first error, so a decoder reads every field and
// checks once at the end; reads after an error return zero values.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

var (
	// ErrTruncated reports input that ends inside a field.
	ErrTruncated = errors.New("e2e: truncated input")
	// ErrTrailing reports bytes left over after the last field.
	ErrTrailing = errors.New("e2e: trailing bytes")
)

// Reader consumes fields from a byte slice.
type Reader struct {
	b   []byte
	err error
}

// NewReader reads from b. Fields returned as slices are copies, so the
// decoded value never aliases the caller's buffer.
func NewReader(b []byte) *Reader { return &Reader{b: b} }

func (r *Reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.err = ErrTruncated
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

// U8 reads one byte.
func (r *Reader) U8() byte {
	v := r.take(1)
	if v == nil {
		return 0
	}
	return v[0]
}

// U16 reads a big-endian uint16.
func (r *Reader) U16() uint16 {
	v := r.take(2)
	if v == nil {
		return 0
	}
	return binary.BigEndian.Uint16(v)
}

// U32 reads a big-endian uint32.
func (r *Reader) U32() uint32 {
	v := r.take(4)
	if v == nil {
		return 0
	}
	return binary.BigEndian.Uint32(v)
}

// Fixed reads exactly n bytes into dst's backing copy.
func (r *Reader) Fixed(dst []byte) {
	v := r.take(len(dst))
	if v != nil {
		copy(dst, v)
	}
}

// Bytes reads exactly n bytes and returns a copy.
func (r *Reader) Bytes(n int) []byte {
	v := r.take(n)
	if v == nil {
		return nil
	}
	return append([]byte(nil), v...)
}

// Bytes16 reads a uint16 length and that many bytes.
func (r *Reader) Bytes16() []byte { return r.Bytes(int(r.U16())) }

// Bytes32 reads a uint32 length and that many bytes, refusing lengths
// longer than the remaining input before allocating.
func (r *Reader) Bytes32() []byte {
	n := r.U32()
	if uint64(n) > uint64(len(r.b)) {
		r.fail(ErrTruncated)
		return nil
	}
	return r.Bytes(int(n))
}

// Rest returns a copy of everything not yet read.
func (r *Reader) Rest() []byte { return r.Bytes(len(r.b)) }

// Len is the number of unread bytes.
func (r *Reader) Len() int { return len(r.b) }

// Fail records err unless an earlier error is already recorded.
func (r *Reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

// Failf records a semantic error found by the caller while decoding.
func (r *Reader) Failf(format string, args ...any) {
	r.fail(fmt.Errorf(format, args...))
}

// Finish returns the first error, or ErrTrailing if input remains.
func (r *Reader) Finish() error {
	if r.err != nil {
		return r.err
	}
	if len(r.b) != 0 {
		return ErrTrailing
	}
	return nil
}

// AppendBytes16 appends a uint16 length and b; b must be shorter than 64 KiB.
func AppendBytes16(dst, b []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(b)))
	return append(dst, b...)
}

// AppendBytes32 appends a uint32 length and b.
func AppendBytes32(dst, b []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(b)))
	return append(dst, b...)
}
