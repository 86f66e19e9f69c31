package senderkey

import (
	"crypto/ed25519"
	"encoding/binary"
	"fmt"

	"github.com/chatd/chatd/internal/e2e/internal/wire"
)

// headerSize is version, distribution ID, chain ID and iteration.
const headerSize = 1 + DistributionIDSize + 4 + 4

// Overhead is what a message adds to its plaintext: header, AEAD tag and
// signature.
const Overhead = headerSize + 16 + ed25519.SignatureSize

// Distribution hands a sender's chain to one group member: the chain key at
// Iteration and the public signing key. It travels inside the pairwise
// ratchet session, which authenticates and encrypts it.
type Distribution struct {
	DistributionID [DistributionIDSize]byte
	ChainID        uint32
	Iteration      uint32
	ChainKey       [32]byte
	SigningKey     [ed25519.PublicKeySize]byte
}

// DistributionSize is the size of a marshalled Distribution.
const DistributionSize = 1 + DistributionIDSize + 4 + 4 + 32 + ed25519.PublicKeySize

// Marshal encodes the distribution (ENVELOPE.md, "Sender key distribution").
func (d *Distribution) Marshal() []byte {
	out := make([]byte, 0, DistributionSize)
	out = append(out, version)
	out = append(out, d.DistributionID[:]...)
	out = binary.BigEndian.AppendUint32(out, d.ChainID)
	out = binary.BigEndian.AppendUint32(out, d.Iteration)
	out = append(out, d.ChainKey[:]...)
	return append(out, d.SigningKey[:]...)
}

// UnmarshalDistribution decodes a distribution.
func UnmarshalDistribution(data []byte) (*Distribution, error) {
	r := wire.NewReader(data)
	if v := r.U8(); v != version {
		r.Failf("%w: distribution version %d", ErrMalformed, v)
	}
	var d Distribution
	r.Fixed(d.DistributionID[:])
	d.ChainID = r.U32()
	d.Iteration = r.U32()
	r.Fixed(d.ChainKey[:])
	r.Fixed(d.SigningKey[:])
	if err := r.Finish(); err != nil {
		return nil, fmt.Errorf("senderkey: distribution: %w", err)
	}
	return &d, nil
}

// header is the cleartext part of a message.
type header struct {
	distributionID [DistributionIDSize]byte
	chainID        uint32
	iteration      uint32
}

func (h *header) marshal() []byte {
	out := make([]byte, 0, headerSize)
	out = append(out, version)
	out = append(out, h.distributionID[:]...)
	out = binary.BigEndian.AppendUint32(out, h.chainID)
	return binary.BigEndian.AppendUint32(out, h.iteration)
}

// parse splits a message into header, header bytes, ciphertext and
// signature.
func parse(msg []byte) (h header, signed, ciphertext, sig []byte, err error) {
	if len(msg) < Overhead || msg[0] != version {
		return h, nil, nil, nil, ErrMalformed
	}
	copy(h.distributionID[:], msg[1:1+DistributionIDSize])
	h.chainID = binary.BigEndian.Uint32(msg[1+DistributionIDSize:])
	h.iteration = binary.BigEndian.Uint32(msg[1+DistributionIDSize+4:])
	signed = msg[:len(msg)-ed25519.SignatureSize]
	return h, signed, msg[headerSize:len(signed)], msg[len(signed):], nil
}
