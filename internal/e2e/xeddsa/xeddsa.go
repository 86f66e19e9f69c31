// Package xeddsa implements XEdDSA signatures (Signal, "The XEdDSA and
// VXEdDSA Signature Schemes", rev. 1, 2016-10-20) over Curve25519.
//
// XEdDSA lets an X25519 key pair, the kind used for Diffie-Hellman, also sign:
// the Montgomery public key u is mapped to the twisted Edwards point with
// sign bit 0, and the private scalar is negated when needed so that it
// matches that point. Signatures are ordinary Ed25519 signatures (R || s)
// under that Edwards key.
//
// Verify is strict where the spec leaves room: it refuses a public key or R
// that is not canonically encoded, an s that is not reduced modulo the group
// order, and public keys or R of small order. Sign never produces any of
// these, so strictness costs honest signers nothing.
package xeddsa

import (
	"crypto/sha512"
	"crypto/subtle"
	"errors"
	"fmt"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
)

const (
	// PublicKeySize is the size of an X25519 public key (the Montgomery u).
	PublicKeySize = 32
	// PrivateKeySize is the size of an X25519 private key.
	PrivateKeySize = 32
	// SignatureSize is the size of an XEdDSA signature, R || s.
	SignatureSize = 64
	// RandomSize is the size of the fresh random input Z that Sign requires.
	RandomSize = 64
)

// hash1Prefix is the domain separator of hash_1 in the spec: the 32-byte
// little-endian encoding of 2^256 - 1 - 1, which keeps the nonce hash apart
// from the Ed25519 challenge hash.
var hash1Prefix = func() [32]byte {
	var p [32]byte
	for i := range p {
		p[i] = 0xFF
	}
	p[0] = 0xFE
	return p
}()

// Sign signs msg with the X25519 private key priv, mixing in random, which
// must be 64 bytes fresh from a secure RNG. The randomness protects against
// fault and side-channel attacks on the deterministic nonce; tests may pass
// fixed bytes to get a reproducible signature.
func Sign(priv, msg, random []byte) ([]byte, error) {
	if len(priv) != PrivateKeySize {
		return nil, fmt.Errorf("xeddsa: private key is %d bytes, want %d", len(priv), PrivateKeySize)
	}
	if len(random) != RandomSize {
		return nil, fmt.Errorf("xeddsa: random is %d bytes, want %d", len(random), RandomSize)
	}
	A, a := keyPair(priv)

	// r = hash_1(a || M || Z) mod q
	h := sha512.New()
	h.Write(hash1Prefix[:])
	h.Write(a.Bytes())
	h.Write(msg)
	h.Write(random)
	r, err := edwards25519.NewScalar().SetUniformBytes(h.Sum(nil))
	if err != nil {
		return nil, fmt.Errorf("xeddsa: nonce: %w", err)
	}
	R := new(edwards25519.Point).ScalarBaseMult(r)
	Rb := R.Bytes()

	k, err := challenge(Rb, A, msg)
	if err != nil {
		return nil, err
	}
	s := edwards25519.NewScalar().MultiplyAdd(k, a, r) // s = r + h·a mod q

	sig := make([]byte, 0, SignatureSize)
	sig = append(sig, Rb...)
	return append(sig, s.Bytes()...), nil
}

// Verify reports whether sig is a valid XEdDSA signature of msg by the X25519
// public key pub. Malformed input of any kind returns false.
func Verify(pub, msg, sig []byte) bool {
	if len(pub) != PublicKeySize || len(sig) != SignatureSize {
		return false
	}
	A, err := edwardsFromMontgomery(pub)
	if err != nil {
		return false
	}
	Rb, sb := sig[:32], sig[32:]
	s, err := edwards25519.NewScalar().SetCanonicalBytes(sb)
	if err != nil {
		return false
	}
	R, err := new(edwards25519.Point).SetBytes(Rb)
	if err != nil || smallOrder(R) {
		return false
	}
	k, err := challenge(Rb, A.Bytes(), msg)
	if err != nil {
		return false
	}
	// Rcheck = sB - hA. Comparing encodings also refuses a non-canonical R,
	// because Bytes is always canonical.
	negK := edwards25519.NewScalar().Negate(k)
	check := new(edwards25519.Point).VarTimeDoubleScalarBaseMult(negK, A, s)
	return subtle.ConstantTimeCompare(check.Bytes(), Rb) == 1
}

// keyPair is calculate_key_pair from the spec: the Edwards public key A with
// sign bit 0, and the private scalar a with A = aB.
func keyPair(priv []byte) ([]byte, *edwards25519.Scalar) {
	// X25519 clamps its private keys, so the signing scalar must be the
	// clamped value too for A to match the published u.
	k, _ := edwards25519.NewScalar().SetBytesWithClamping(priv) // length checked by caller
	E := new(edwards25519.Point).ScalarBaseMult(k)
	Eb := E.Bytes()
	neg := int(Eb[31] >> 7)
	// a = -k when E's sign bit is set, else k, chosen without a branch.
	ab := k.Bytes()
	subtle.ConstantTimeCopy(neg, ab, edwards25519.NewScalar().Negate(k).Bytes())
	a, _ := edwards25519.NewScalar().SetCanonicalBytes(ab) // both candidates are reduced
	Eb[31] &= 0x7F
	return Eb, a
}

// challenge is h = SHA-512(R || A || M) mod q, the Ed25519 challenge.
func challenge(R, A, msg []byte) (*edwards25519.Scalar, error) {
	h := sha512.New()
	h.Write(R)
	h.Write(A)
	h.Write(msg)
	k, err := edwards25519.NewScalar().SetUniformBytes(h.Sum(nil))
	if err != nil {
		return nil, fmt.Errorf("xeddsa: challenge: %w", err)
	}
	return k, nil
}

// ErrBadPublicKey reports an X25519 public key that is not canonical, not on
// the curve, or of small order.
var ErrBadPublicKey = errors.New("xeddsa: bad public key")

// edwardsFromMontgomery is convert_mont from the spec, y = (u-1)/(u+1) with
// sign bit 0, refusing every u that an honest X25519 key never has: a
// non-canonical encoding (u >= p or the top bit set), a u on the twist, and
// a point of small order.
func edwardsFromMontgomery(pub []byte) (*edwards25519.Point, error) {
	u, err := new(field.Element).SetBytes(pub)
	if err != nil {
		return nil, ErrBadPublicKey
	}
	if subtle.ConstantTimeCompare(u.Bytes(), pub) != 1 {
		return nil, ErrBadPublicKey
	}
	one := new(field.Element).One()
	num := new(field.Element).Subtract(u, one)
	den := new(field.Element).Add(u, one)
	// u = -1 makes den zero; Invert(0) = 0 gives y = 0, a point of order 4
	// that smallOrder refuses below.
	y := new(field.Element).Multiply(num, new(field.Element).Invert(den))
	A, err := new(edwards25519.Point).SetBytes(y.Bytes())
	if err != nil {
		return nil, ErrBadPublicKey
	}
	if smallOrder(A) {
		return nil, ErrBadPublicKey
	}
	return A, nil
}

// ValidPublicKey reports whether pub is an X25519 public key Verify could
// accept signatures from: canonical, on the curve and not of small order.
func ValidPublicKey(pub []byte) bool {
	if len(pub) != PublicKeySize {
		return false
	}
	_, err := edwardsFromMontgomery(pub)
	return err == nil
}

// smallOrder reports whether P lies in the 8-torsion subgroup.
func smallOrder(P *edwards25519.Point) bool {
	return new(edwards25519.Point).MultByCofactor(P).Equal(edwards25519.NewIdentityPoint()) == 1
}
