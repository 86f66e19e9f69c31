package ratchet

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
)

// The KDFs follow the Double Ratchet spec's recommendations (section 5.2)
// with Signal's info strings, so the symmetric chain matches libsignal's
// (ratchet_test.go checks libsignal's chain-key vector).
const (
	rootInfo    = "WhisperRatchet"
	messageInfo = "WhisperMessageKeys"
)

// kdfRK is KDF_RK: HKDF-SHA256 with the root key as salt and the DH output
// as input, split into the next root key and a chain key.
func kdfRK(rk *[32]byte, dh []byte) (newRK, ck [32]byte) {
	okm, err := hkdf.Key(sha256.New, dh, rk[:], rootInfo, 64)
	if err != nil {
		panic("ratchet: hkdf: " + err.Error()) // only for lengths > 255*32
	}
	copy(newRK[:], okm[:32])
	copy(ck[:], okm[32:])
	return newRK, ck
}

// kdfCK is KDF_CK: HMAC-SHA256 of the chain key with constant 0x02 for the
// next chain key and 0x01 for the message key.
func kdfCK(ck *[32]byte) (next, mk [32]byte) {
	m := hmac.New(sha256.New, ck[:])
	m.Write([]byte{0x02})
	m.Sum(next[:0])
	m.Reset()
	m.Write([]byte{0x01})
	m.Sum(mk[:0])
	return next, mk
}

// messageKeys expands a message key into the AEAD key and nonce: 80 bytes
// of HKDF (zero salt), laid out as the spec's encryption key (32), auth key
// (32) and IV (16). The AEAD authenticates by itself, so the auth key goes
// unused, and the nonce is the IV's first 12 bytes; a message key encrypts
// exactly one message, so the nonce never repeats under a key.
func messageKeys(mk *[32]byte) (key [32]byte, nonce [12]byte) {
	okm, err := hkdf.Key(sha256.New, mk[:], nil, messageInfo, 80)
	if err != nil {
		panic("ratchet: hkdf: " + err.Error())
	}
	copy(key[:], okm[:32])
	copy(nonce[:], okm[64:76])
	return key, nonce
}
