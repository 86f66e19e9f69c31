package secure

import (
	"crypto/ed25519"
	"crypto/sha512"
	"errors"
	"fmt"
	"io"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
)

// XEdDSA (Signal's specification, "The XEdDSA and VXEdDSA Signature
// Schemes", revision 1) signs with an X25519 private key, so the server's
// Noise static key, the one clients pin, signs its own successor: no
// second key for clients to pin, and nothing to bind a separate signing
// key to the pinned one. Verification is Ed25519's equation on the
// Edwards form of the Montgomery public key with its sign bit cleared,
// so crypto/ed25519 checks it.

// SignatureSize is the length of an XEdDSA signature: R then s.
const SignatureSize = 64

// xeddsaPrefix is hash_1's prefix: 2^256 - 1 - 1, little-endian.
var xeddsaPrefix = func() []byte {
	p := make([]byte, 32)
	for i := range p {
		p[i] = 0xff
	}
	p[0] = 0xfe
	return p
}()

// Sign signs msg with an X25519 private key (XEdDSA). random supplies the
// 64 bytes of Z that make the nonce unpredictable even to someone who
// knows earlier signatures.
func Sign(private, msg []byte, random io.Reader) ([]byte, error) {
	if len(private) != 32 {
		return nil, fmt.Errorf("secure: sign: private key of %d bytes, want 32", len(private))
	}
	var z [64]byte
	if _, err := io.ReadFull(random, z[:]); err != nil {
		return nil, fmt.Errorf("secure: sign: %w", err)
	}
	a, err := edwards25519.NewScalar().SetBytesWithClamping(private)
	if err != nil {
		return nil, fmt.Errorf("secure: sign: %w", err)
	}
	// calculate_key_pair: the Edwards public key with sign bit 0, and the
	// scalar negated when kB's sign bit was 1 (-kB has the same y).
	pub := new(edwards25519.Point).ScalarBaseMult(a).Bytes()
	if pub[31]&0x80 != 0 {
		a.Negate(a)
		pub[31] &^= 0x80
	}
	h := sha512.New()
	h.Write(xeddsaPrefix)
	h.Write(a.Bytes())
	h.Write(msg)
	h.Write(z[:])
	r, _ := edwards25519.NewScalar().SetUniformBytes(h.Sum(nil))
	R := new(edwards25519.Point).ScalarBaseMult(r).Bytes()
	h.Reset()
	h.Write(R)
	h.Write(pub)
	h.Write(msg)
	k, _ := edwards25519.NewScalar().SetUniformBytes(h.Sum(nil))
	s := edwards25519.NewScalar().MultiplyAdd(k, a, r)
	return append(R, s.Bytes()...), nil
}

// Verify reports whether sig is an XEdDSA signature of msg by the X25519
// public key pub.
func Verify(pub, msg, sig []byte) bool {
	if len(pub) != 32 || len(sig) != SignatureSize {
		return false
	}
	edPub, err := edwardsPublic(pub)
	if err != nil {
		return false
	}
	// ed25519.Verify refuses a non-canonical s and an A off the curve,
	// and checks R = sB - hA with h = SHA-512(R || A || msg): XEdDSA's
	// verification, once A is the Edwards form of pub.
	return ed25519.Verify(edPub, msg, sig)
}

// edwardsPublic is convert_mont(u): the Edwards point with
// y = (u - 1) / (u + 1) and sign bit 0. XEdDSA refuses u >= p.
func edwardsPublic(u []byte) (ed25519.PublicKey, error) {
	masked := [32]byte(u)
	masked[31] &= 0x7f
	if masked != [32]byte(u) {
		return nil, errors.New("secure: public key has its top bit set")
	}
	x, err := new(field.Element).SetBytes(masked[:])
	if err != nil {
		return nil, err
	}
	if [32]byte(x.Bytes()) != masked { // SetBytes reduced it: u >= p
		return nil, errors.New("secure: public key is not below p")
	}
	one := new(field.Element).One()
	num := new(field.Element).Subtract(x, one)
	den := new(field.Element).Add(x, one)
	y := new(field.Element).Multiply(num, new(field.Element).Invert(den))
	return ed25519.PublicKey(y.Bytes()), nil // sign bit (bit 255) is 0: y < p
}
