// Package pqxdh implements the PQXDH key agreement (Signal, "The PQXDH Key
// Agreement Protocol", rev. 3) with X25519, ML-KEM-1024, SHA-256 and XEdDSA
// prekey signatures. It turns Bob's published prekey bundle into a shared
// secret and associated data that seed the Double Ratchet, so that Alice can
// start a session while Bob is offline.
//
// It follows the spec, not Signal's wire format: the key encodings, the KDF
// info string and the byte layouts are chatd's own (see ../ENVELOPE.md).
package pqxdh

import (
	"crypto/ecdh"
	"crypto/mlkem"
	"crypto/rand"
	"fmt"

	"github.com/chatd/chatd/internal/e2e/xeddsa"
)

const (
	// KeySize is the size of an X25519 public or private key.
	KeySize = 32
	// KEMPublicKeySize is the size of an ML-KEM-1024 encapsulation key.
	KEMPublicKeySize = mlkem.EncapsulationKeySize1024
	// KEMCiphertextSize is the size of an ML-KEM-1024 ciphertext.
	KEMCiphertextSize = mlkem.CiphertextSize1024
	// SignatureSize is the size of an XEdDSA signature.
	SignatureSize = xeddsa.SignatureSize

	// typeX25519 and typeMLKEM1024 prefix keys in signed messages and in
	// the associated data: EncodeEC and EncodeKEM in the spec. Signing the
	// type keeps an EC key signature from ever verifying as a KEM key one.
	typeX25519    = 0x05
	typeMLKEM1024 = 0x0A
)

// EncodeEC is the spec's EncodeEC: a type byte and the X25519 public key. A
// signed prekey's signature is XEdDSA(identity, EncodeEC(spk)); a server
// that checks uploads verifies exactly these bytes.
func EncodeEC(pub []byte) []byte {
	return append([]byte{typeX25519}, pub...)
}

// EncodeKEM is the spec's EncodeKEM: a type byte and the ML-KEM-1024
// encapsulation key. A KEM prekey's signature is XEdDSA(identity,
// EncodeKEM(pqpk)).
func EncodeKEM(pub []byte) []byte {
	return append([]byte{typeMLKEM1024}, pub...)
}

// sign signs an encoded prekey with the identity key.
func sign(identity *ecdh.PrivateKey, msg []byte) ([SignatureSize]byte, error) {
	var sig [SignatureSize]byte
	z := make([]byte, xeddsa.RandomSize)
	if _, err := rand.Read(z); err != nil {
		return sig, fmt.Errorf("pqxdh: sign: %w", err)
	}
	s, err := xeddsa.Sign(identity.Bytes(), msg, z)
	if err != nil {
		return sig, fmt.Errorf("pqxdh: sign: %w", err)
	}
	copy(sig[:], s)
	return sig, nil
}

// SignedPreKeyPrivate is Bob's half of a signed prekey.
type SignedPreKeyPrivate struct {
	ID  uint32
	Key *ecdh.PrivateKey
}

// OneTimePreKeyPrivate is Bob's half of a one-time EC prekey.
type OneTimePreKeyPrivate struct {
	ID  uint32
	Key *ecdh.PrivateKey
}

// KEMPreKeyPrivate is Bob's half of an ML-KEM prekey. Only Bob knows whether
// it is a one-time key (delete after use) or the last-resort key (keep until
// rotated); the bundle does not say.
type KEMPreKeyPrivate struct {
	ID         uint32
	LastResort bool
	Key        *mlkem.DecapsulationKey1024
}

// NewSignedPreKey makes a signed prekey and its public, signed form.
func NewSignedPreKey(identity *ecdh.PrivateKey, id uint32) (*SignedPreKeyPrivate, SignedPreKey, error) {
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, SignedPreKey{}, fmt.Errorf("pqxdh: signed prekey: %w", err)
	}
	return SignSignedPreKey(identity, id, k)
}

// SignSignedPreKey signs an existing key as signed prekey id.
func SignSignedPreKey(identity *ecdh.PrivateKey, id uint32, k *ecdh.PrivateKey) (*SignedPreKeyPrivate, SignedPreKey, error) {
	pub := SignedPreKey{ID: id}
	copy(pub.Public[:], k.PublicKey().Bytes())
	sig, err := sign(identity, EncodeEC(pub.Public[:]))
	if err != nil {
		return nil, SignedPreKey{}, err
	}
	pub.Signature = sig
	return &SignedPreKeyPrivate{ID: id, Key: k}, pub, nil
}

// NewOneTimePreKey makes a one-time EC prekey.
func NewOneTimePreKey(id uint32) (*OneTimePreKeyPrivate, OneTimePreKey, error) {
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, OneTimePreKey{}, fmt.Errorf("pqxdh: one-time prekey: %w", err)
	}
	pub := OneTimePreKey{ID: id}
	copy(pub.Public[:], k.PublicKey().Bytes())
	return &OneTimePreKeyPrivate{ID: id, Key: k}, pub, nil
}

// NewKEMPreKey makes a signed ML-KEM-1024 prekey.
func NewKEMPreKey(identity *ecdh.PrivateKey, id uint32, lastResort bool) (*KEMPreKeyPrivate, KEMPreKey, error) {
	dk, err := mlkem.GenerateKey1024()
	if err != nil {
		return nil, KEMPreKey{}, fmt.Errorf("pqxdh: KEM prekey: %w", err)
	}
	return SignKEMPreKey(identity, id, lastResort, dk)
}

// SignKEMPreKey signs an existing ML-KEM key as KEM prekey id.
func SignKEMPreKey(identity *ecdh.PrivateKey, id uint32, lastResort bool, dk *mlkem.DecapsulationKey1024) (*KEMPreKeyPrivate, KEMPreKey, error) {
	pub := KEMPreKey{ID: id}
	copy(pub.Public[:], dk.EncapsulationKey().Bytes())
	sig, err := sign(identity, EncodeKEM(pub.Public[:]))
	if err != nil {
		return nil, KEMPreKey{}, err
	}
	pub.Signature = sig
	return &KEMPreKeyPrivate{ID: id, LastResort: lastResort, Key: dk}, pub, nil
}

// Verify checks the signed prekey's signature by identity.
func (k SignedPreKey) Verify(identity []byte) bool {
	return xeddsa.Verify(identity, EncodeEC(k.Public[:]), k.Signature[:])
}

// Verify checks the KEM prekey's signature by identity.
func (k KEMPreKey) Verify(identity []byte) bool {
	return xeddsa.Verify(identity, EncodeKEM(k.Public[:]), k.Signature[:])
}
