package ratchet

import (
	"crypto/ecdh"
	"io"
	mrand "math/rand/v2"
	"testing"
)

// seededKeys returns a key generator drawing from a ChaCha8 stream, so a
// test's ratchet keys are reproducible.
func seededKeys(r io.Reader) func() (*ecdh.PrivateKey, error) {
	return func() (*ecdh.PrivateKey, error) {
		b := make([]byte, 32)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, err
		}
		return ecdh.X25519().NewPrivateKey(b)
	}
}

// newPair starts a session from seeded randomness, as PQXDH would: Alice
// knows Bob's signed prekey, both share sk and ad.
func newPair(t testing.TB, seed uint64, cfg Config) (alice, bob *State) {
	t.Helper()
	return newPairVariant(t, seed, cfg, false)
}

// newPairHE is newPair for a header-encrypted session.
func newPairHE(t testing.TB, seed uint64, cfg Config) (alice, bob *State) {
	t.Helper()
	return newPairVariant(t, seed, cfg, true)
}

func newPairVariant(t testing.TB, seed uint64, cfg Config, he bool) (alice, bob *State) {
	t.Helper()
	rng := mrand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24), 'd', 'r'})
	keys := seededKeys(rng)
	var sk [32]byte
	rng.Read(sk[:])
	ad := make([]byte, 66)
	rng.Read(ad)
	spk, err := keys()
	if err != nil {
		t.Fatal(err)
	}
	if he {
		alice, err = initAliceHE(sk, ad, spk.PublicKey().Bytes(), cfg, keys)
		bob = InitBobHE(sk, ad, spk, cfg)
	} else {
		alice, err = initAlice(sk, ad, spk.PublicKey().Bytes(), cfg, keys)
		bob = InitBob(sk, ad, spk, cfg)
	}
	if err != nil {
		t.Fatal(err)
	}
	bob.newKey = keys
	return alice, bob
}

func mustEncrypt(t testing.TB, s *State, pt string) []byte {
	t.Helper()
	m, err := s.Encrypt([]byte(pt))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func mustDecrypt(t testing.TB, s *State, m []byte, want string) {
	t.Helper()
	pt, err := s.Decrypt(m)
	if err != nil {
		t.Fatalf("decrypt %q: %v", want, err)
	}
	if string(pt) != want {
		t.Fatalf("decrypted %q, want %q", pt, want)
	}
}

// mustFailUnchanged decrypts m, expects an error, and checks the state is
// byte-identical afterwards.
func mustFailUnchanged(t testing.TB, s *State, m []byte) error {
	t.Helper()
	before := s.Marshal()
	pt, err := s.Decrypt(m)
	if err == nil {
		t.Fatalf("decrypt succeeded (%q), want failure", pt)
	}
	if after := s.Marshal(); string(after) != string(before) {
		t.Fatalf("failed decrypt (%v) changed the state", err)
	}
	return err
}
