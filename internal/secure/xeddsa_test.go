package secure

import (
	"bytes"
	"crypto/rand"
	"testing"
)

// TestXEdDSASignVerify: the server's Noise keys sign and verify through
// package xeddsa (whose own tests hold the scheme's vectors and its
// refusals of out-of-range and small-order keys).
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
