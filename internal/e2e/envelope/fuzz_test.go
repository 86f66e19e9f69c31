package envelope

import (
	"bytes"
	mrand "math/rand/v2"
	"testing"

	"github.com/chatd/chatd/internal/e2e/pqxdh"
)

// FuzzUnmarshal: envelope, content and bundle decoders never panic, and
// what they accept re-encodes to the same bytes (one encoding per value).
func FuzzUnmarshal(f *testing.F) {
	for _, e := range sample(mrand.NewChaCha8([32]byte{9})) {
		b, _ := e.Marshal()
		f.Add(b)
	}
	f.Add((&Content{Type: ContentBody, Body: []byte("x")}).Marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		if e, err := Unmarshal(b); err == nil {
			b2, err := e.Marshal()
			if err != nil || !bytes.Equal(b, b2) {
				t.Fatalf("envelope does not round-trip: %v", err)
			}
		}
		if c, err := UnmarshalContent(b); err == nil && !bytes.Equal(c.Marshal(), b) {
			t.Fatal("content does not round-trip")
		}
		if bd, err := pqxdh.UnmarshalBundle(b); err == nil && !bytes.Equal(bd.Marshal(), b) {
			t.Fatal("bundle does not round-trip")
		}
	})
}
