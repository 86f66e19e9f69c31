package ratchet

import (
	"crypto/subtle"
	"fmt"
	"math"

	"golang.org/x/crypto/chacha20poly1305"
)

// Encrypt seals plaintext as the next message of the sending chain and
// returns header || ciphertext. The chain advances even if the caller never
// sends the message; the receiver then simply stores a skipped key.
func (s *State) Encrypt(plaintext []byte) ([]byte, error) {
	if !s.hasCKs {
		return nil, ErrNoSendingChain
	}
	if s.ns == math.MaxUint32 {
		return nil, ErrCounter
	}
	if s.he {
		return s.encryptHE(plaintext)
	}
	next, mk := kdfCK(&s.cks)
	h := Header{PN: s.pn, N: s.ns}
	copy(h.DH[:], s.dhs.PublicKey().Bytes())
	msg := h.Marshal()
	msg, err := seal(msg, &mk, plaintext, s.ad)
	if err != nil {
		return nil, err
	}
	s.cks = next
	s.ns++
	return msg, nil
}

// seal appends the AEAD ciphertext of plaintext to header, authenticating
// AD || header.
func seal(header []byte, mk *[32]byte, plaintext, ad []byte) ([]byte, error) {
	key, nonce := messageKeys(mk)
	aead, err := chacha20poly1305.New(key[:])
	if err != nil {
		return nil, fmt.Errorf("ratchet: aead: %w", err)
	}
	aad := make([]byte, 0, len(ad)+len(header))
	aad = append(append(aad, ad...), header...)
	return aead.Seal(header, nonce[:], plaintext, aad), nil
}

// open authenticates and decrypts msg (header || ciphertext) with mk.
func open(msg []byte, mk *[32]byte, ad []byte) ([]byte, error) {
	key, nonce := messageKeys(mk)
	aead, err := chacha20poly1305.New(key[:])
	if err != nil {
		return nil, fmt.Errorf("ratchet: aead: %w", err)
	}
	aad := make([]byte, 0, len(ad)+HeaderSize)
	aad = append(append(aad, ad...), msg[:HeaderSize]...)
	pt, err := aead.Open(nil, nonce[:], msg[HeaderSize:], aad)
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}

func equal32(a, b *[32]byte) bool { return subtle.ConstantTimeCompare(a[:], b[:]) == 1 }
