package secure

import (
	"bytes"
	"crypto/rand"
	"testing"

	"filippo.io/edwards25519"
	"golang.org/x/crypto/curve25519"
)

func TestXEdDSASignVerify(t *testing.T) {
	for i := 0; i < 64; i++ { // both signs of kB turn up
		k, err := GenerateKeypair()
		if err != nil {
			t.Fatal(err)
		}
		msg := []byte("chatd xeddsa test message")
		sig, err := Sign(k.Private, msg, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if !Verify(k.Public, msg, sig) {
			t.Fatalf("key %x: a good signature does not verify", k.Public)
		}
		if Verify(k.Public, append(msg, '!'), sig) {
			t.Fatal("a signature verifies for another message")
		}
		bad := bytes.Clone(sig)
		bad[i%64] ^= 1
		if Verify(k.Public, msg, bad) {
			t.Fatalf("an altered signature (byte %d) verifies", i%64)
		}
		other, _ := GenerateKeypair()
		if Verify(other.Public, msg, sig) {
			t.Fatal("a signature verifies under another key")
		}
	}
}

// TestXEdDSAPublicIsTheX25519Key checks the conversion both ways: the
// Edwards key Verify derives from the X25519 public key is the one Sign
// derives from the private key, so the key clients pin is the key that
// signs.
func TestXEdDSAPublicIsTheX25519Key(t *testing.T) {
	for i := 0; i < 32; i++ {
		k, _ := GenerateKeypair()
		a, _ := edwards25519.NewScalar().SetBytesWithClamping(k.Private)
		E := new(edwards25519.Point).ScalarBaseMult(a)
		u, _ := curve25519.X25519(k.Private, curve25519.Basepoint)
		if !bytes.Equal(E.BytesMontgomery(), u) {
			t.Fatal("kB's Montgomery form is not the X25519 public key")
		}
		want := E.Bytes()
		want[31] &^= 0x80
		got, err := edwardsPublic(u)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("edwardsPublic = %x, %v; want %x", got, err, want)
		}
	}
}

func TestXEdDSARefusesOutOfRangeKeys(t *testing.T) {
	sig := make([]byte, 64)
	high := bytes.Repeat([]byte{0xff}, 32) // top bit set
	if Verify(high, nil, sig) {
		t.Fatal("verified under a key with the top bit set")
	}
	p := bytes.Repeat([]byte{0xff}, 32) // p = 2^255 - 19, little-endian
	p[0], p[31] = 0xed, 0x7f
	if _, err := edwardsPublic(p); err == nil {
		t.Fatal("u = p accepted")
	}
}
