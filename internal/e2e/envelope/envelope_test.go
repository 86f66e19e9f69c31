package envelope

import (
	"bytes"
	"encoding/hex"
	mrand "math/rand/v2"
	"testing"

	"github.com/chatd/chatd/internal/e2e/internal/golden"
	"github.com/chatd/chatd/internal/e2e/pqxdh"
	"github.com/chatd/chatd/internal/e2e/ratchet"
	"github.com/chatd/chatd/internal/e2e/senderkey"
)

func sample(rng *mrand.ChaCha8) []*Envelope {
	var m pqxdh.InitialMessage
	rng.Read(m.IdentityKey[:])
	rng.Read(m.EphemeralKey[:])
	m.SignedPreKeyID, m.KEMPreKeyID = 0x0a0b0c0d, 0x01020304
	opk := uint32(0x11223344)
	m.OneTimePreKeyID = &opk
	rng.Read(m.KEMCiphertext[:])
	msg := func(n int) []byte {
		b := make([]byte, n)
		rng.Read(b)
		return b
	}
	return []*Envelope{
		{Kind: KindPreKey, Initial: &m, Message: msg(ratchet.Overhead + 64)},
		{Kind: KindRatchet, Message: msg(ratchet.Overhead + 64)},
		{Kind: KindSenderKey, Message: msg(senderkey.Overhead + 64)},
		{Kind: KindPreKeyHE, Initial: &m, Message: msg(ratchet.HEOverhead + 64)},
		{Kind: KindRatchetHE, Message: msg(ratchet.HEOverhead + 64)},
	}
}

// plainKinds are the kinds every client implements (the browser page
// too); the header-encrypted ones have their own vectors file, since a
// client without header encryption refuses them.
func plainKinds(es []*Envelope) (plain, he []*Envelope) {
	for _, e := range es {
		if e.Kind.HeaderEncrypted() {
			he = append(he, e)
		} else {
			plain = append(plain, e)
		}
	}
	return plain, he
}

func TestRoundTrip(t *testing.T) {
	for _, e := range sample(mrand.NewChaCha8([32]byte{1})) {
		b, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		e2, err := Unmarshal(b)
		if err != nil {
			t.Fatalf("%s: %v", e.Kind, err)
		}
		b2, _ := e2.Marshal()
		if !bytes.Equal(b, b2) {
			t.Fatalf("%s: round trip differs", e.Kind)
		}
	}
	// Without a one-time key the initial message is 4 bytes shorter.
	e := sample(mrand.NewChaCha8([32]byte{2}))[0]
	e.Initial.OneTimePreKeyID = nil
	b, _ := e.Marshal()
	e2, err := Unmarshal(b)
	if err != nil || e2.Initial.OneTimePreKeyID != nil {
		t.Fatalf("prekey envelope without one-time key: %v", err)
	}
}

func TestUnmarshalRefuses(t *testing.T) {
	es := sample(mrand.NewChaCha8([32]byte{3}))
	for _, e := range es {
		b, _ := e.Marshal()
		for _, bad := range [][]byte{
			nil,
			b[:1],
			b[:len(b)-65], // payload shorter than the layer's minimum
			append([]byte{2}, b[1:]...),
			append([]byte{1, 9}, b[2:]...),
		} {
			if _, err := Unmarshal(bad); err == nil {
				t.Errorf("%s: malformed envelope % x... accepted", e.Kind, bad[:min(len(bad), 4)])
			}
		}
	}
	if _, err := (&Envelope{Kind: KindPreKey}).Marshal(); err == nil {
		t.Error("prekey envelope without initial message marshalled")
	}
	if _, err := (&Envelope{Kind: KindRatchet, Initial: es[0].Initial}).Marshal(); err == nil {
		t.Error("ratchet envelope with initial message marshalled")
	}
}

func TestContent(t *testing.T) {
	for _, n := range []int{0, 1, 58, 59, 60, 1000} {
		c := &Content{Type: ContentBody, Body: bytes.Repeat([]byte{'x'}, n)}
		b := c.Marshal()
		if len(b)%PadBlock != 0 || len(b) < n+5 {
			t.Fatalf("body %d: padded to %d", n, len(b))
		}
		c2, err := UnmarshalContent(b)
		if err != nil || c2.Type != c.Type || !bytes.Equal(c2.Body, c.Body) {
			t.Fatalf("body %d: %v", n, err)
		}
	}
	b := (&Content{Type: ContentSenderKey, Body: []byte("d")}).Marshal()
	b[len(b)-1] = 1
	if _, err := UnmarshalContent(b); err == nil {
		t.Fatal("non-zero padding accepted")
	}
	b = (&Content{Type: ContentBody, Body: []byte("d")}).Marshal()
	b[0] = 7
	if _, err := UnmarshalContent(b); err == nil {
		t.Fatal("unknown content type accepted")
	}
	b = (&Content{Type: ContentBody, Body: []byte("d")}).Marshal()
	b[4] = 200 // length past the end
	if _, err := UnmarshalContent(b); err == nil {
		t.Fatal("overlong length accepted")
	}
}

type envelopeVector struct {
	Kind     string `json:"kind"`
	Envelope string `json:"envelope"`
}

// TestKnownAnswers freezes the layouts; ENVELOPE.md annotates these bytes.
func TestKnownAnswers(t *testing.T) {
	plain, he := plainKinds(sample(mrand.NewChaCha8([32]byte{'e', 'n', 'v'})))
	vectors := func(es []*Envelope) []envelopeVector {
		var vs []envelopeVector
		for _, e := range es {
			b, err := e.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			vs = append(vs, envelopeVector{e.Kind.String(), hex.EncodeToString(b)})
		}
		return vs
	}
	vs := vectors(plain)
	c := &Content{Type: ContentBody, Body: []byte("hi")}
	vs = append(vs, envelopeVector{"content", hex.EncodeToString(c.Marshal())})
	golden.Check(t, "testdata/envelope.json", vs)
	golden.Check(t, "testdata/envelope_he.json", vectors(he))
}

func TestContentPaddingExact(t *testing.T) {
	b := (&Content{Type: ContentBody, Body: []byte("d")}).Marshal()
	if _, err := UnmarshalContent(append(bytes.Clone(b), make([]byte, PadBlock)...)); err == nil {
		t.Fatal("an extra block of padding accepted")
	}
	if _, err := UnmarshalContent(b[:len(b)-1]); err == nil {
		t.Fatal("short padding accepted")
	}
}
