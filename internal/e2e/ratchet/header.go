package ratchet

import (
	"encoding/binary"
	"errors"
)

// HeaderSize is the size of a message header: the sender's ratchet public
// key, PN and N.
const HeaderSize = 32 + 4 + 4

// Overhead is how many bytes a message adds to its plaintext: the header and
// the AEAD tag.
const Overhead = HeaderSize + 16

// ErrMalformed reports a message too short to hold a header and tag.
var ErrMalformed = errors.New("ratchet: malformed message")

// Header is the cleartext part of a ratchet message.
type Header struct {
	DH [32]byte // sender's current ratchet public key
	PN uint32   // messages in the sender's previous sending chain
	N  uint32   // message number in the current sending chain
}

// Marshal encodes the header as DH || PN || N, big-endian.
func (h *Header) Marshal() []byte {
	b := make([]byte, 0, HeaderSize)
	b = append(b, h.DH[:]...)
	b = binary.BigEndian.AppendUint32(b, h.PN)
	return binary.BigEndian.AppendUint32(b, h.N)
}

// ParseHeader reads the header at the start of a message.
func ParseHeader(msg []byte) (Header, error) {
	var h Header
	if len(msg) < Overhead {
		return h, ErrMalformed
	}
	copy(h.DH[:], msg[:32])
	h.PN = binary.BigEndian.Uint32(msg[32:36])
	h.N = binary.BigEndian.Uint32(msg[36:40])
	return h, nil
}
