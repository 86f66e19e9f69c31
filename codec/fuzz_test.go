package codec

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to the stream splitter and the body
// decoders, whole and in two halves (the way a socket delivers them), and
// checks that nothing panics, errors are typed, and every frame that
// decodes re-encodes to the same bytes. The seed corpus in
// testdata/fuzz/FuzzDecode runs as an ordinary test.
func FuzzDecode(f *testing.F) {
	for _, v := range vectors {
		f.Add(v.frame.Append(nil), uint16(3))
	}
	f.Fuzz(func(t *testing.T, data []byte, cut uint16) {
		whole := decodeStream(t, data)
		// The same bytes split at an arbitrary point decode the same frames.
		c := int(cut) % (len(data) + 1)
		buf := append([]byte(nil), data[:c]...)
		var halves [][]byte
		for _, part := range [][]byte{nil, data[c:]} {
			buf = append(buf, part...)
			for {
				tp, body, rest, ok, err := Split(buf, 0)
				if err != nil || !ok {
					break
				}
				halves = append(halves, append([]byte{byte(tp)}, body...))
				buf = rest
			}
		}
		if len(halves) != len(whole) {
			t.Fatalf("whole stream gave %d frames, split stream %d", len(whole), len(halves))
		}
		for i := range whole {
			if !bytes.Equal(whole[i], halves[i]) {
				t.Fatalf("frame %d differs between whole and split input", i)
			}
		}
	})
}

// decodeStream splits data into frames and decodes each; it returns the
// raw type+body of every frame the splitter produced.
func decodeStream(t *testing.T, data []byte) [][]byte {
	var frames [][]byte
	for {
		tp, body, rest, ok, err := Split(data, 0)
		if err != nil {
			if !errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("untyped header error %v", err)
			}
			return frames
		}
		if !ok {
			return frames
		}
		frames = append(frames, append([]byte{byte(tp)}, body...))
		f, err := DecodeBody(tp, body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknownType) {
				t.Fatalf("untyped decode error %v", err)
			}
		} else {
			again := f.Append(nil)
			if !bytes.Equal(again[4:], append([]byte{byte(tp)}, body...)) {
				t.Fatalf("%v re-encodes differently:\n in %x\nout %x", tp, body, again[HeaderLen:])
			}
		}
		data = rest
	}
}
