package pqxdh

import (
	"bytes"
	"crypto/ecdh"
	"crypto/mlkem"
	"crypto/mlkem/mlkemtest"
	"encoding/hex"
	"errors"
	"io"
	mrand "math/rand/v2"
	"testing"

	"github.com/chatd/chatd/internal/e2e/internal/golden"
	"github.com/chatd/chatd/internal/e2e/xeddsa"
)

// bob holds one device's private prekeys and the bundle built from them.
type bob struct {
	identity *ecdh.PrivateKey
	spk      *SignedPreKeyPrivate
	opk      *OneTimePreKeyPrivate
	kem      *KEMPreKeyPrivate
	bundle   *Bundle
}

func newBob(t testing.TB, withOPK bool) *bob {
	t.Helper()
	ik, err := ecdh.X25519().GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	b := &bob{identity: ik, bundle: &Bundle{}}
	copy(b.bundle.IdentityKey[:], ik.PublicKey().Bytes())
	if b.spk, b.bundle.SignedPreKey, err = NewSignedPreKey(ik, 7); err != nil {
		t.Fatal(err)
	}
	if b.kem, b.bundle.KEMPreKey, err = NewKEMPreKey(ik, 9, false); err != nil {
		t.Fatal(err)
	}
	if withOPK {
		var pub OneTimePreKey
		if b.opk, pub, err = NewOneTimePreKey(8); err != nil {
			t.Fatal(err)
		}
		b.bundle.OneTimePreKey = &pub
	}
	return b
}

func newIdentity(t testing.TB) *ecdh.PrivateKey {
	k, err := ecdh.X25519().GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestHandshake(t *testing.T) {
	for _, withOPK := range []bool{true, false} {
		b := newBob(t, withOPK)
		alice := newIdentity(t)
		// The bundle goes over the wire; so does the initial message.
		bundle, err := UnmarshalBundle(b.bundle.Marshal())
		if err != nil {
			t.Fatal(err)
		}
		m, as, err := Initiate(alice, bundle)
		if err != nil {
			t.Fatal(err)
		}
		m2, err := UnmarshalInitialMessage(m.Marshal())
		if err != nil {
			t.Fatal(err)
		}
		bs, err := Respond(b.identity, b.spk, b.opk, b.kem, m2)
		if err != nil {
			t.Fatal(err)
		}
		if as.SharedKey != bs.SharedKey || !bytes.Equal(as.AssociatedData, bs.AssociatedData) {
			t.Fatalf("opk=%v: Alice and Bob derived different secrets", withOPK)
		}
		wantAD := append(EncodeEC(alice.PublicKey().Bytes()), EncodeEC(b.identity.PublicKey().Bytes())...)
		if !bytes.Equal(as.AssociatedData, wantAD) {
			t.Fatal("AD is not EncodeEC(IK_A) || EncodeEC(IK_B)")
		}
		// A second run uses a fresh ephemeral key and KEM encapsulation.
		_, as2, err := Initiate(alice, bundle)
		if err != nil {
			t.Fatal(err)
		}
		if as2.SharedKey == as.SharedKey {
			t.Fatal("two handshakes gave the same key")
		}
		// Bob with the wrong KEM key derives nothing useful: ML-KEM
		// decapsulation implicitly rejects, giving a different key.
		other := newBob(t, withOPK)
		other.kem.ID = b.kem.ID
		if bs, err := Respond(b.identity, b.spk, b.opk, other.kem, m2); err != nil || bs.SharedKey == as.SharedKey {
			t.Fatalf("wrong KEM key: err %v, same key %v", err, err == nil && bs.SharedKey == as.SharedKey)
		}
	}
}

func TestForgedPreKeysRefused(t *testing.T) {
	b := newBob(t, true)
	alice := newIdentity(t)
	mallory := newIdentity(t)

	forge := map[string]func(*Bundle){
		"spk signature bit flipped": func(x *Bundle) { x.SignedPreKey.Signature[5] ^= 1 },
		"spk swapped for mallory's": func(x *Bundle) {
			_, pub, err := NewSignedPreKey(mallory, x.SignedPreKey.ID)
			if err != nil {
				t.Fatal(err)
			}
			x.SignedPreKey = pub
		},
		"spk key changed, signature kept": func(x *Bundle) { x.SignedPreKey.Public[0] ^= 1 },
		"kem signature bit flipped":       func(x *Bundle) { x.KEMPreKey.Signature[63] ^= 0x10 },
		"kem key changed, signature kept": func(x *Bundle) { x.KEMPreKey.Public[100] ^= 1 },
		"kem swapped for mallory's": func(x *Bundle) {
			_, pub, err := NewKEMPreKey(mallory, x.KEMPreKey.ID, true)
			if err != nil {
				t.Fatal(err)
			}
			x.KEMPreKey = pub
		},
		"identity swapped for mallory's": func(x *Bundle) { copy(x.IdentityKey[:], mallory.PublicKey().Bytes()) },
	}
	for name, f := range forge {
		x, err := UnmarshalBundle(b.bundle.Marshal())
		if err != nil {
			t.Fatal(err)
		}
		f(x)
		if _, _, err := Initiate(alice, x); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: got %v, want ErrBadSignature", name, err)
		}
	}
	// An EC signature must not verify as a KEM one even over equal bytes:
	// the type byte separates them.
	if xeddsa.Verify(b.bundle.IdentityKey[:], EncodeKEM(b.bundle.SignedPreKey.Public[:]), b.bundle.SignedPreKey.Signature[:]) {
		t.Fatal("EC prekey signature verified as a KEM encoding")
	}
}

var lowOrder = [][]byte{
	make([]byte, 32),
	{1},
	mustHex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
	mustHex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
	mustHex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func pad32(b []byte) [32]byte {
	var a [32]byte
	copy(a[:], b)
	return a
}

func TestLowOrderKeysRefused(t *testing.T) {
	alice := newIdentity(t)
	for _, lo := range lowOrder {
		// A low-order one-time key is not signed, so only the DH check
		// stands between it and a predictable DH4.
		b := newBob(t, true)
		b.bundle.OneTimePreKey.Public = pad32(lo)
		if _, _, err := Initiate(alice, b.bundle); !errors.Is(err, ErrBadKey) {
			t.Errorf("low-order one-time key %x: got %v", lo, err)
		}
		b.bundle.IdentityKey = pad32(lo)
		if _, _, err := Initiate(alice, b.bundle); !errors.Is(err, ErrBadKey) {
			t.Errorf("low-order identity key %x: got %v", lo, err)
		}

		// Bob refuses a low-order ephemeral or identity key from Alice.
		b = newBob(t, false)
		m, _, err := Initiate(alice, b.bundle)
		if err != nil {
			t.Fatal(err)
		}
		bad := *m
		bad.EphemeralKey = pad32(lo)
		if _, err := Respond(b.identity, b.spk, nil, b.kem, &bad); !errors.Is(err, ErrBadKey) {
			t.Errorf("low-order ephemeral key %x: got %v", lo, err)
		}
		bad = *m
		bad.IdentityKey = pad32(lo)
		if _, err := Respond(b.identity, b.spk, nil, b.kem, &bad); !errors.Is(err, ErrBadKey) {
			t.Errorf("low-order initiator identity %x: got %v", lo, err)
		}
	}
}

func TestRespondWrongPreKeys(t *testing.T) {
	b := newBob(t, true)
	m, _, err := Initiate(newIdentity(t), b.bundle)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]func() error{
		"missing one-time key": func() error { _, err := Respond(b.identity, b.spk, nil, b.kem, m); return err },
		"other spk id": func() error {
			spk := *b.spk
			spk.ID++
			_, err := Respond(b.identity, &spk, b.opk, b.kem, m)
			return err
		},
		"other kem id": func() error {
			k := *b.kem
			k.ID++
			_, err := Respond(b.identity, b.spk, b.opk, &k, m)
			return err
		},
		"other opk id": func() error {
			o := *b.opk
			o.ID++
			_, err := Respond(b.identity, b.spk, &o, b.kem, m)
			return err
		},
	}
	for name, f := range cases {
		if err := f(); !errors.Is(err, ErrWrongPreKey) {
			t.Errorf("%s: got %v", name, err)
		}
	}
}

func TestUnmarshalRefusesMalformed(t *testing.T) {
	b := newBob(t, true)
	full := b.bundle.Marshal()
	if len(full) != BundleSize {
		t.Fatalf("bundle is %d bytes, want %d", len(full), BundleSize)
	}
	for _, n := range []int{0, 1, 33, 100, len(full) - 1} {
		if _, err := UnmarshalBundle(full[:n]); err == nil {
			t.Errorf("bundle truncated to %d bytes accepted", n)
		}
	}
	if _, err := UnmarshalBundle(append(bytes.Clone(full), 0)); err == nil {
		t.Error("bundle with a trailing byte accepted")
	}
	bad := bytes.Clone(full)
	bad[0] = 2
	if _, err := UnmarshalBundle(bad); err == nil {
		t.Error("bundle version 2 accepted")
	}
	bad = bytes.Clone(full)
	bad[1+32+4+32+64] = 2
	if _, err := UnmarshalBundle(bad); err == nil {
		t.Error("bundle with one-time flag 2 accepted")
	}
	m, _, err := Initiate(newIdentity(t), b.bundle)
	if err != nil {
		t.Fatal(err)
	}
	mb := m.Marshal()
	if _, err := UnmarshalInitialMessage(mb[:len(mb)-1]); err == nil {
		t.Error("truncated initial message accepted")
	}
}

// seeded builds every key and random input from one ChaCha8 stream, so the
// handshake is reproducible across Go releases (ML-KEM and X25519 are
// deterministic given their seeds).
type seeded struct{ r io.Reader }

func (s seeded) bytes(n int) []byte {
	b := make([]byte, n)
	s.r.Read(b)
	return b
}

func (s seeded) x25519(t *testing.T) *ecdh.PrivateKey {
	k, err := ecdh.X25519().NewPrivateKey(s.bytes(32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func (s seeded) sign(t *testing.T, ik *ecdh.PrivateKey, msg []byte) [64]byte {
	sig, err := xeddsa.Sign(ik.Bytes(), msg, s.bytes(64))
	if err != nil {
		t.Fatal(err)
	}
	return [64]byte(sig)
}

type handshakeVector struct {
	AlicePrivate   string `json:"alice_identity_private"`
	EphemeralPriv  string `json:"alice_ephemeral_private"`
	BobPrivate     string `json:"bob_identity_private"`
	SPKPrivate     string `json:"bob_spk_private"`
	OPKPrivate     string `json:"bob_opk_private,omitempty"`
	KEMSeed        string `json:"bob_kem_seed"`
	EncapsRandom   string `json:"encaps_random"`
	Bundle         string `json:"bundle"`
	InitialMessage string `json:"initial_message"`
	SharedKey      string `json:"shared_key"`
	AssociatedData string `json:"associated_data"`
}

func TestKnownAnswers(t *testing.T) {
	s := seeded{mrand.NewChaCha8([32]byte{'p', 'q', 'x', 'd', 'h'})}
	var vs []handshakeVector
	for _, withOPK := range []bool{true, false} {
		var v handshakeVector
		alice, eph, bobIK, spk := s.x25519(t), s.x25519(t), s.x25519(t), s.x25519(t)
		seed, encRand := s.bytes(mlkem.SeedSize), s.bytes(32)
		dk, err := mlkem.NewDecapsulationKey1024(seed)
		if err != nil {
			t.Fatal(err)
		}
		b := &Bundle{IdentityKey: [32]byte(bobIK.PublicKey().Bytes())}
		b.SignedPreKey = SignedPreKey{ID: 1, Public: [32]byte(spk.PublicKey().Bytes())}
		b.SignedPreKey.Signature = s.sign(t, bobIK, EncodeEC(b.SignedPreKey.Public[:]))
		b.KEMPreKey = KEMPreKey{ID: 3, Public: [KEMPublicKeySize]byte(dk.EncapsulationKey().Bytes())}
		b.KEMPreKey.Signature = s.sign(t, bobIK, EncodeKEM(b.KEMPreKey.Public[:]))
		var opk *OneTimePreKeyPrivate
		if withOPK {
			k := s.x25519(t)
			opk = &OneTimePreKeyPrivate{ID: 2, Key: k}
			b.OneTimePreKey = &OneTimePreKey{ID: 2, Public: [32]byte(k.PublicKey().Bytes())}
			v.OPKPrivate = hex.EncodeToString(k.Bytes())
		}
		m, as, err := initiate(alice, b, eph, func(ek *mlkem.EncapsulationKey1024) ([]byte, []byte, error) {
			return mlkemtest.Encapsulate1024(ek, encRand)
		})
		if err != nil {
			t.Fatal(err)
		}
		bs, err := Respond(bobIK, &SignedPreKeyPrivate{ID: 1, Key: spk}, opk, &KEMPreKeyPrivate{ID: 3, Key: dk}, m)
		if err != nil {
			t.Fatal(err)
		}
		if bs.SharedKey != as.SharedKey {
			t.Fatal("secrets differ")
		}
		v.AlicePrivate = hex.EncodeToString(alice.Bytes())
		v.EphemeralPriv = hex.EncodeToString(eph.Bytes())
		v.BobPrivate = hex.EncodeToString(bobIK.Bytes())
		v.SPKPrivate = hex.EncodeToString(spk.Bytes())
		v.KEMSeed = hex.EncodeToString(seed)
		v.EncapsRandom = hex.EncodeToString(encRand)
		v.Bundle = hex.EncodeToString(b.Marshal())
		v.InitialMessage = hex.EncodeToString(m.Marshal())
		v.SharedKey = hex.EncodeToString(as.SharedKey[:])
		v.AssociatedData = hex.EncodeToString(as.AssociatedData)
		vs = append(vs, v)
	}
	golden.Check(t, "testdata/pqxdh.json", vs)
}

func BenchmarkInitiate(b *testing.B) {
	bb := newBob(b, true)
	alice := newIdentity(b)
	for b.Loop() {
		if _, _, err := Initiate(alice, bb.bundle); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRespond(b *testing.B) {
	bb := newBob(b, true)
	m, _, err := Initiate(newIdentity(b), bb.bundle)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := Respond(bb.identity, bb.spk, bb.opk, bb.kem, m); err != nil {
			b.Fatal(err)
		}
	}
}
