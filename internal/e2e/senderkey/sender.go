package senderkey

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/chatd/chatd/internal/e2e/internal/wire"
)

// Sender is a member's own sending chain for one group.
type Sender struct {
	distributionID [DistributionIDSize]byte
	chainID        uint32
	iteration      uint32
	chainKey       [32]byte
	signing        ed25519.PrivateKey
}

// NewSender starts a sending chain with fresh random keys.
func NewSender(distributionID [DistributionIDSize]byte) (*Sender, error) {
	var buf [4 + 32 + ed25519.SeedSize]byte
	if _, err := rand.Read(buf[:]); err != nil {
		return nil, fmt.Errorf("senderkey: new chain: %w", err)
	}
	return newSender(distributionID, binary.BigEndian.Uint32(buf[:4]), [32]byte(buf[4:36]), buf[36:]), nil
}

func newSender(id [DistributionIDSize]byte, chainID uint32, ck [32]byte, seed []byte) *Sender {
	return &Sender{distributionID: id, chainID: chainID, chainKey: ck, signing: ed25519.NewKeyFromSeed(seed)}
}

// Rotate replaces the chain with a fresh one (new chain ID, chain key and
// signing key). Send the new Distribution to the members who should read
// what follows; anyone left out cannot.
func (s *Sender) Rotate() error {
	n, err := NewSender(s.distributionID)
	if err != nil {
		return err
	}
	for n.chainID == s.chainID {
		var b [4]byte
		if _, err := rand.Read(b[:]); err != nil {
			return fmt.Errorf("senderkey: rotate: %w", err)
		}
		n.chainID = binary.BigEndian.Uint32(b[:])
	}
	*s = *n
	return nil
}

// Distribution describes the chain from its current iteration on, so a
// member added now cannot read earlier messages.
func (s *Sender) Distribution() *Distribution {
	d := &Distribution{DistributionID: s.distributionID, ChainID: s.chainID, Iteration: s.iteration, ChainKey: s.chainKey}
	copy(d.SigningKey[:], s.signing.Public().(ed25519.PublicKey))
	return d
}

// Encrypt seals plaintext once for every member and signs it.
func (s *Sender) Encrypt(plaintext []byte) ([]byte, error) {
	if s.iteration == math.MaxUint32 {
		return nil, ErrCounter
	}
	next, seed := kdfCK(&s.chainKey)
	h := header{distributionID: s.distributionID, chainID: s.chainID, iteration: s.iteration}
	hb := h.marshal()
	msg, err := seal(&seed, plaintext, hb, hb)
	if err != nil {
		return nil, err
	}
	msg = append(msg, ed25519.Sign(s.signing, msg)...)
	s.chainKey, s.iteration = next, s.iteration+1
	return msg, nil
}

// Marshal encodes the sender's state, secrets included (ENVELOPE.md,
// "Sender key state").
func (s *Sender) Marshal() []byte {
	out := make([]byte, 0, 1+DistributionIDSize+8+32+ed25519.SeedSize)
	out = append(out, version)
	out = append(out, s.distributionID[:]...)
	out = binary.BigEndian.AppendUint32(out, s.chainID)
	out = binary.BigEndian.AppendUint32(out, s.iteration)
	out = append(out, s.chainKey[:]...)
	return append(out, s.signing.Seed()...)
}

// UnmarshalSender decodes a Sender written by Marshal.
func UnmarshalSender(data []byte) (*Sender, error) {
	r := wire.NewReader(data)
	if v := r.U8(); v != version {
		r.Failf("%w: sender version %d", ErrMalformed, v)
	}
	var id [DistributionIDSize]byte
	var ck [32]byte
	r.Fixed(id[:])
	chainID, iteration := r.U32(), r.U32()
	r.Fixed(ck[:])
	seed := r.Bytes(ed25519.SeedSize)
	if err := r.Finish(); err != nil {
		return nil, fmt.Errorf("senderkey: sender: %w", err)
	}
	s := newSender(id, chainID, ck, seed)
	s.iteration = iteration
	return s, nil
}
