package pqxdh

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/mlkem"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/chatd/chatd/internal/e2e/xeddsa"
)

// Info is the HKDF info string, chatd's own so that no secret derived here
// can collide with another protocol's.
const Info = "chatd-e2e PQXDH v1 X25519 SHA-256 ML-KEM-1024"

var (
	// ErrBadSignature reports a prekey whose signature does not verify;
	// the spec requires Alice to abort.
	ErrBadSignature = errors.New("pqxdh: prekey signature does not verify")
	// ErrBadKey reports a public key that is malformed, of small order, or
	// gives an all-zero Diffie-Hellman result.
	ErrBadKey = errors.New("pqxdh: bad public key")
	// ErrWrongPreKey reports an initial message naming prekeys other than
	// the ones Respond was given.
	ErrWrongPreKey = errors.New("pqxdh: initial message names other prekeys")
)

// Secret is the outcome of the handshake: the 32-byte key SK that seeds the
// Double Ratchet and the associated data AD = EncodeEC(IK_A) || EncodeEC(IK_B)
// that every ratchet message authenticates.
type Secret struct {
	SharedKey      [32]byte
	AssociatedData []byte
}

// Initiate runs Alice's side against Bob's bundle: it verifies both prekey
// signatures, aborting if either fails, and returns the initial message to
// send with her first ratchet message.
func Initiate(identity *ecdh.PrivateKey, b *Bundle) (*InitialMessage, *Secret, error) {
	eph, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("pqxdh: ephemeral key: %w", err)
	}
	return initiate(identity, b, eph, func(ek *mlkem.EncapsulationKey1024) ([]byte, []byte, error) {
		ss, ct := ek.Encapsulate()
		return ss, ct, nil
	})
}

// encapsulator lets tests supply derandomised ML-KEM encapsulation.
type encapsulator func(*mlkem.EncapsulationKey1024) (sharedKey, ciphertext []byte, err error)

func initiate(identity *ecdh.PrivateKey, b *Bundle, eph *ecdh.PrivateKey, encaps encapsulator) (*InitialMessage, *Secret, error) {
	if !xeddsa.ValidPublicKey(b.IdentityKey[:]) {
		return nil, nil, fmt.Errorf("%w: identity key", ErrBadKey)
	}
	if !b.SignedPreKey.Verify(b.IdentityKey[:]) {
		return nil, nil, fmt.Errorf("%w: signed prekey %d", ErrBadSignature, b.SignedPreKey.ID)
	}
	if !b.KEMPreKey.Verify(b.IdentityKey[:]) {
		return nil, nil, fmt.Errorf("%w: KEM prekey %d", ErrBadSignature, b.KEMPreKey.ID)
	}
	ik, err := publicKey(b.IdentityKey[:])
	if err != nil {
		return nil, nil, err
	}
	spk, err := publicKey(b.SignedPreKey.Public[:])
	if err != nil {
		return nil, nil, err
	}
	ek, err := mlkem.NewEncapsulationKey1024(b.KEMPreKey.Public[:])
	if err != nil {
		return nil, nil, fmt.Errorf("%w: KEM prekey: %v", ErrBadKey, err)
	}

	var dh [][]byte
	for _, pair := range []struct {
		priv *ecdh.PrivateKey
		pub  *ecdh.PublicKey
	}{{identity, spk}, {eph, ik}, {eph, spk}} {
		s, err := agree(pair.priv, pair.pub)
		if err != nil {
			return nil, nil, err
		}
		dh = append(dh, s)
	}
	m := &InitialMessage{
		SignedPreKeyID: b.SignedPreKey.ID,
		KEMPreKeyID:    b.KEMPreKey.ID,
	}
	if b.OneTimePreKey != nil {
		opk, err := publicKey(b.OneTimePreKey.Public[:])
		if err != nil {
			return nil, nil, err
		}
		s, err := agree(eph, opk)
		if err != nil {
			return nil, nil, err
		}
		dh = append(dh, s)
		id := b.OneTimePreKey.ID
		m.OneTimePreKeyID = &id
	}
	ss, ct, err := encaps(ek)
	if err != nil {
		return nil, nil, fmt.Errorf("pqxdh: encapsulate: %w", err)
	}
	copy(m.IdentityKey[:], identity.PublicKey().Bytes())
	copy(m.EphemeralKey[:], eph.PublicKey().Bytes())
	copy(m.KEMCiphertext[:], ct)

	sec, err := derive(dh, ss, m.IdentityKey[:], b.IdentityKey[:])
	if err != nil {
		return nil, nil, err
	}
	return m, sec, nil
}

// Respond runs Bob's side. The caller looks up the private prekeys the
// message names (m.SignedPreKeyID, m.OneTimePreKeyID, m.KEMPreKeyID) and,
// once the first ratchet message has decrypted, deletes the one-time keys
// so a replayed initial message cannot start a second session.
func Respond(identity *ecdh.PrivateKey, spk *SignedPreKeyPrivate, opk *OneTimePreKeyPrivate, kem *KEMPreKeyPrivate, m *InitialMessage) (*Secret, error) {
	if spk == nil || kem == nil || spk.ID != m.SignedPreKeyID || kem.ID != m.KEMPreKeyID {
		return nil, ErrWrongPreKey
	}
	if (opk == nil) != (m.OneTimePreKeyID == nil) || (opk != nil && opk.ID != *m.OneTimePreKeyID) {
		return nil, ErrWrongPreKey
	}
	if !xeddsa.ValidPublicKey(m.IdentityKey[:]) {
		return nil, fmt.Errorf("%w: initiator identity key", ErrBadKey)
	}
	ika, err := publicKey(m.IdentityKey[:])
	if err != nil {
		return nil, err
	}
	eka, err := publicKey(m.EphemeralKey[:])
	if err != nil {
		return nil, err
	}
	var dh [][]byte
	for _, pair := range []struct {
		priv *ecdh.PrivateKey
		pub  *ecdh.PublicKey
	}{{spk.Key, ika}, {identity, eka}, {spk.Key, eka}} {
		s, err := agree(pair.priv, pair.pub)
		if err != nil {
			return nil, err
		}
		dh = append(dh, s)
	}
	if opk != nil {
		s, err := agree(opk.Key, eka)
		if err != nil {
			return nil, err
		}
		dh = append(dh, s)
	}
	ss, err := kem.Key.Decapsulate(m.KEMCiphertext[:])
	if err != nil {
		return nil, fmt.Errorf("pqxdh: decapsulate: %w", err)
	}
	return derive(dh, ss, m.IdentityKey[:], identity.PublicKey().Bytes())
}

// derive is SK = HKDF(salt = 0^32, IKM = F || DH1 || DH2 || DH3 [|| DH4] ||
// SS, info), with F = 0xFF^32 for domain separation from XEdDSA as the spec
// asks.
func derive(dh [][]byte, ss, ikA, ikB []byte) (*Secret, error) {
	ikm := bytes.Repeat([]byte{0xFF}, 32)
	for _, s := range dh {
		ikm = append(ikm, s...)
	}
	ikm = append(ikm, ss...)
	key, err := hkdf.Key(sha256.New, ikm, make([]byte, 32), Info, 32)
	if err != nil {
		return nil, fmt.Errorf("pqxdh: hkdf: %w", err)
	}
	sec := &Secret{AssociatedData: append(EncodeEC(ikA), EncodeEC(ikB)...)}
	copy(sec.SharedKey[:], key)
	return sec, nil
}

func publicKey(b []byte) (*ecdh.PublicKey, error) {
	k, err := ecdh.X25519().NewPublicKey(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	return k, nil
}

// agree is X25519 that refuses an all-zero result, which is what a
// small-order public key produces (crypto/ecdh returns an error for it).
func agree(priv *ecdh.PrivateKey, pub *ecdh.PublicKey) ([]byte, error) {
	s, err := priv.ECDH(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	return s, nil
}
