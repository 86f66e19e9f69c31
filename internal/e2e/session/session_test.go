package session

import (
	"bytes"
	"crypto/ecdh"
	"errors"
	"fmt"
	"testing"

	"github.com/chatd/chatd/internal/e2e/envelope"
	"github.com/chatd/chatd/internal/e2e/pqxdh"
	"github.com/chatd/chatd/internal/e2e/ratchet"
	"github.com/chatd/chatd/internal/e2e/senderkey"
)

// device is a responder with a key store, as a client would keep one.
type device struct {
	identity *ecdh.PrivateKey
	spk      map[uint32]*pqxdh.SignedPreKeyPrivate
	opk      map[uint32]*pqxdh.OneTimePreKeyPrivate
	kem      map[uint32]*pqxdh.KEMPreKeyPrivate
	bundle   *pqxdh.Bundle
}

var errNoKey = errors.New("no such prekey")

func (d *device) SignedPreKey(id uint32) (*pqxdh.SignedPreKeyPrivate, error) {
	if k, ok := d.spk[id]; ok {
		return k, nil
	}
	return nil, errNoKey
}

func (d *device) OneTimePreKey(id uint32) (*pqxdh.OneTimePreKeyPrivate, error) {
	if k, ok := d.opk[id]; ok {
		return k, nil
	}
	return nil, errNoKey
}

func (d *device) KEMPreKey(id uint32) (*pqxdh.KEMPreKeyPrivate, error) {
	if k, ok := d.kem[id]; ok {
		return k, nil
	}
	return nil, errNoKey
}

func newDevice(t testing.TB) *device {
	t.Helper()
	ik, err := ecdh.X25519().GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	d := &device{identity: ik, spk: map[uint32]*pqxdh.SignedPreKeyPrivate{}, opk: map[uint32]*pqxdh.OneTimePreKeyPrivate{}, kem: map[uint32]*pqxdh.KEMPreKeyPrivate{}}
	b := &pqxdh.Bundle{IdentityKey: [32]byte(ik.PublicKey().Bytes())}
	spk, spkPub, err := pqxdh.NewSignedPreKey(ik, 1)
	if err != nil {
		t.Fatal(err)
	}
	kem, kemPub, err := pqxdh.NewKEMPreKey(ik, 2, true)
	if err != nil {
		t.Fatal(err)
	}
	opk, opkPub, err := pqxdh.NewOneTimePreKey(3)
	if err != nil {
		t.Fatal(err)
	}
	d.spk[1], d.kem[2], d.opk[3] = spk, kem, opk
	b.SignedPreKey, b.KEMPreKey, b.OneTimePreKey = spkPub, kemPub, &opkPub
	d.bundle = b
	return d
}

func body(s string) *envelope.Content {
	return &envelope.Content{Type: envelope.ContentBody, Body: []byte(s)}
}

func kindOf(t *testing.T, b []byte) envelope.Kind {
	t.Helper()
	e, err := envelope.Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return e.Kind
}

func open(t *testing.T, s *Session, b []byte, want string) {
	t.Helper()
	c, err := s.Open(b)
	if err != nil {
		t.Fatalf("open %q: %v", want, err)
	}
	if c.Type != envelope.ContentBody || string(c.Body) != want {
		t.Fatalf("opened %d %q, want %q", c.Type, c.Body, want)
	}
}

func TestSessionLifecycle(t *testing.T) {
	bob := newDevice(t)
	aliceID, _ := ecdh.X25519().GenerateKey(nil)
	bundle, err := pqxdh.UnmarshalBundle(bob.bundle.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	alice, err := Start(aliceID, bundle, ratchet.Config{})
	if err != nil {
		t.Fatal(err)
	}
	e1, _ := alice.Seal(body("hi bob"))
	e2, _ := alice.Seal(body("it's alice"))
	if kindOf(t, e1) != envelope.KindPreKey || kindOf(t, e2) != envelope.KindPreKey {
		t.Fatal("initiator's first envelopes are not prekey envelopes")
	}

	// Bob starts from the second message (the first is late).
	bobS, c, m, err := Accept(bob.identity, bob, e2, ratchet.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if string(c.Body) != "it's alice" || m.OneTimePreKeyID == nil || *m.OneTimePreKeyID != 3 {
		t.Fatalf("accept: %q, initial %+v", c.Body, m)
	}
	open(t, bobS, e1, "hi bob")

	// Persist both sides and continue.
	alice, err = Unmarshal(alice.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	bobS, err = Unmarshal(bobS.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	r1, _ := bobS.Seal(body("hello alice"))
	if kindOf(t, r1) != envelope.KindRatchet {
		t.Fatal("responder sent a prekey envelope")
	}
	open(t, alice, r1, "hello alice")
	e3, _ := alice.Seal(body("after the reply"))
	if kindOf(t, e3) != envelope.KindRatchet {
		t.Fatal("initiator still sends prekey envelopes after a reply")
	}
	open(t, bobS, e3, "after the reply")

	// A failed open leaves the session as it was.
	before := bobS.Marshal()
	bad := bytes.Clone(e3)
	bad[len(bad)-1] ^= 1
	if _, err := bobS.Open(bad); err == nil {
		t.Fatal("tampered envelope opened")
	}
	if !bytes.Equal(bobS.Marshal(), before) {
		t.Fatal("failed Open changed the session")
	}
}

func TestAcceptRefuses(t *testing.T) {
	bob := newDevice(t)
	aliceID, _ := ecdh.X25519().GenerateKey(nil)
	alice, err := Start(aliceID, bob.bundle, ratchet.Config{})
	if err != nil {
		t.Fatal(err)
	}
	e, _ := alice.Seal(body("x"))
	bad := bytes.Clone(e)
	bad[len(bad)-1] ^= 1
	if _, _, _, err := Accept(bob.identity, bob, bad, ratchet.Config{}); !errors.Is(err, ratchet.ErrDecrypt) {
		t.Fatalf("tampered prekey envelope: %v", err)
	}
	delete(bob.opk, 3) // used up
	if _, _, _, err := Accept(bob.identity, bob, e, ratchet.Config{}); !errors.Is(err, errNoKey) {
		t.Fatalf("replayed one-time key: %v", err)
	}
	forged := *bob.bundle
	forged.SignedPreKey.Signature[0] ^= 1
	if _, err := Start(aliceID, &forged, ratchet.Config{}); !errors.Is(err, pqxdh.ErrBadSignature) {
		t.Fatalf("forged bundle: %v", err)
	}
}

func TestGroupOverSessions(t *testing.T) {
	bob := newDevice(t)
	aliceID, _ := ecdh.X25519().GenerateKey(nil)
	alice, err := Start(aliceID, bob.bundle, ratchet.Config{})
	if err != nil {
		t.Fatal(err)
	}
	sender, err := senderkey.NewSender([16]byte{1})
	if err != nil {
		t.Fatal(err)
	}
	dist, err := alice.Seal(Distribution(sender))
	if err != nil {
		t.Fatal(err)
	}
	_, c, _, err := Accept(bob.identity, bob, dist, ratchet.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Type != envelope.ContentSenderKey {
		t.Fatalf("content type %d", c.Type)
	}
	d, err := senderkey.UnmarshalDistribution(c.Body)
	if err != nil {
		t.Fatal(err)
	}
	recv := senderkey.NewReceiver(d, senderkey.Config{})
	for i := range 3 {
		g, err := SealGroup(sender, body(fmt.Sprint("group ", i)))
		if err != nil {
			t.Fatal(err)
		}
		gc, err := OpenGroup(recv, g)
		if err != nil || string(gc.Body) != fmt.Sprint("group ", i) {
			t.Fatalf("group message %d: %v %q", i, err, gc)
		}
	}
	if _, err := SealGroup(sender, Distribution(sender)); !errors.Is(err, ErrKind) {
		t.Fatal("distribution sealed into a group message")
	}
}

// BenchmarkSessionSetup is a whole session start: Alice verifies the
// bundle, runs PQXDH and seals a first message; Bob runs PQXDH and opens it.
func BenchmarkSessionSetup(b *testing.B) {
	bob := newDevice(b)
	aliceID, _ := ecdh.X25519().GenerateKey(nil)
	c := body("hello")
	for b.Loop() {
		s, err := Start(aliceID, bob.bundle, ratchet.Config{})
		if err != nil {
			b.Fatal(err)
		}
		e, err := s.Seal(c)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, _, err := Accept(bob.identity, bob, e, ratchet.Config{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSealOpen is one 100-byte message through the envelope layer on
// an established session.
func BenchmarkSealOpen(b *testing.B) {
	bob := newDevice(b)
	aliceID, _ := ecdh.X25519().GenerateKey(nil)
	alice, _ := Start(aliceID, bob.bundle, ratchet.Config{})
	e, _ := alice.Seal(body("hi"))
	bobS, _, _, err := Accept(bob.identity, bob, e, ratchet.Config{})
	if err != nil {
		b.Fatal(err)
	}
	r, _ := bobS.Seal(body("hi"))
	if _, err := alice.Open(r); err != nil {
		b.Fatal(err)
	}
	c := &envelope.Content{Type: envelope.ContentBody, Body: make([]byte, 100)}
	for b.Loop() {
		e, err := alice.Seal(c)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := bobS.Open(e); err != nil {
			b.Fatal(err)
		}
	}
}
