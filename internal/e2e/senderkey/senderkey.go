// Package senderkey implements group sender keys the way Signal's groups use
// them: each member owns a sending chain (a symmetric KDF chain plus an
// Ed25519 signing key), hands it to every other member once in a
// Distribution message sent over their pairwise Double Ratchet sessions, and
// then encrypts each group message once for everyone, signing it so members
// cannot forge one another's messages.
//
// Sender keys give forward secrecy within a chain but no post-compromise
// security: a member who leaves, or whose state leaks, can read the chain
// until the sender rotates (Sender.Rotate) and redistributes. Rotate on
// every membership change.
package senderkey

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"
)

// DistributionIDSize is the size of the identifier naming one sender's key
// within one group; the application picks it (e.g. random per group and
// sender).
const DistributionIDSize = 16

const (
	version     = 1
	messageInfo = "chatd-e2e sender key v1 message keys"
)

var (
	// ErrMalformed reports bytes that do not decode.
	ErrMalformed = errors.New("senderkey: malformed input")
	// ErrNoState reports a message under a chain this receiver was never
	// given (no Distribution yet, or rotated out).
	ErrNoState = errors.New("senderkey: unknown sender chain")
	// ErrBadSignature reports a message not signed by the chain's owner.
	ErrBadSignature = errors.New("senderkey: bad signature")
	// ErrDecrypt reports a message that does not authenticate.
	ErrDecrypt = errors.New("senderkey: message does not authenticate")
	// ErrOldMessage reports a message whose key was used or forgotten.
	ErrOldMessage = errors.New("senderkey: message key already used or forgotten")
	// ErrTooFarAhead reports a message more than MaxForwardJump ahead.
	ErrTooFarAhead = errors.New("senderkey: message too far ahead in the chain")
	// ErrCounter reports a chain that ran out of iterations.
	ErrCounter = errors.New("senderkey: iteration counter exhausted")
)

// kdfCK steps the sender chain: HMAC-SHA256 with 0x02 for the next chain
// key and 0x01 for the message key seed, as Signal's sender chains do.
func kdfCK(ck *[32]byte) (next, seed [32]byte) {
	m := hmac.New(sha256.New, ck[:])
	m.Write([]byte{0x02})
	m.Sum(next[:0])
	m.Reset()
	m.Write([]byte{0x01})
	m.Sum(seed[:0])
	return next, seed
}

// messageKeys expands a message key seed into the AEAD key and nonce.
func messageKeys(seed *[32]byte) (key [32]byte, nonce [12]byte) {
	okm, err := hkdf.Key(sha256.New, seed[:], nil, messageInfo, 44)
	if err != nil {
		panic("senderkey: hkdf: " + err.Error())
	}
	copy(key[:], okm[:32])
	copy(nonce[:], okm[32:])
	return key, nonce
}

func seal(seed *[32]byte, plaintext, ad []byte, dst []byte) ([]byte, error) {
	key, nonce := messageKeys(seed)
	aead, err := chacha20poly1305.New(key[:])
	if err != nil {
		return nil, fmt.Errorf("senderkey: aead: %w", err)
	}
	return aead.Seal(dst, nonce[:], plaintext, ad), nil
}

func open(seed *[32]byte, ciphertext, ad []byte) ([]byte, error) {
	key, nonce := messageKeys(seed)
	aead, err := chacha20poly1305.New(key[:])
	if err != nil {
		return nil, fmt.Errorf("senderkey: aead: %w", err)
	}
	pt, err := aead.Open(nil, nonce[:], ciphertext, ad)
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}
