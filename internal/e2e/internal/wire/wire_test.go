package wire

import (
	"errors"
	"testing"
)

func TestReader(t *testing.T) {
	b := []byte{7, 0, 1, 0, 0, 0, 2, 'a', 'b', 0, 0, 0, 1, 'c', 9}
	r := NewReader(b)
	if r.U8() != 7 || r.U16() != 1 || r.U32() != 2 {
		t.Fatal("integers misread")
	}
	var two [2]byte
	r.Fixed(two[:])
	if string(two[:]) != "ab" {
		t.Fatal("fixed field misread")
	}
	got := r.Bytes32()
	if string(got) != "c" {
		t.Fatalf("length-prefixed field %q", got)
	}
	b[13] = 'x' // results are copies
	if string(got) != "c" {
		t.Fatal("result aliases the input")
	}
	if err := r.Finish(); !errors.Is(err, ErrTrailing) {
		t.Fatalf("trailing byte: %v", err)
	}
	if r.U8() != 9 || r.Finish() != nil {
		t.Fatal("last byte")
	}
}

func TestReaderErrorsStick(t *testing.T) {
	r := NewReader([]byte{0, 0, 0, 200, 1})
	if r.Bytes32() != nil {
		t.Fatal("overlong length returned bytes")
	}
	// Later reads return zero values and the first error stays.
	if r.U8() != 0 || r.U32() != 0 {
		t.Fatal("read after error returned data")
	}
	r.Failf("later")
	if err := r.Finish(); !errors.Is(err, ErrTruncated) {
		t.Fatalf("got %v, want the first error", err)
	}
	if got := NewReader(nil).Bytes16(); got != nil {
		t.Fatal("empty input returned bytes")
	}
	short := NewReader([]byte{0, 5, 1})
	short.Bytes16()
	if !errors.Is(short.Finish(), ErrTruncated) {
		t.Fatal("short Bytes16 accepted")
	}
}

func TestAppend(t *testing.T) {
	b := AppendBytes16(nil, []byte("hi"))
	b = AppendBytes32(b, []byte("x"))
	r := NewReader(b)
	if string(r.Bytes16()) != "hi" || string(r.Bytes32()) != "x" || r.Finish() != nil {
		t.Fatal("append/read round trip")
	}
}
