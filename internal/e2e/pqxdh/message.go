package pqxdh

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/chatd/chatd/internal/e2e/internal/wire"
)

// InitialMessage is what Alice sends with her first ratchet messages so that
// Bob can run Respond: her identity and ephemeral keys, the prekeys she used
// and the ML-KEM ciphertext.
type InitialMessage struct {
	IdentityKey     [KeySize]byte
	EphemeralKey    [KeySize]byte
	SignedPreKeyID  uint32
	OneTimePreKeyID *uint32 // nil when the bundle had no one-time key
	KEMPreKeyID     uint32
	KEMCiphertext   [KEMCiphertextSize]byte
}

// ErrBadInitialMessage reports an initial message that does not decode.
var ErrBadInitialMessage = errors.New("pqxdh: malformed initial message")

// Marshal encodes the message (layout in ENVELOPE.md, "Initial message").
func (m *InitialMessage) Marshal() []byte {
	out := make([]byte, 0, 2*KeySize+4+1+4+4+KEMCiphertextSize)
	out = append(out, m.IdentityKey[:]...)
	out = append(out, m.EphemeralKey[:]...)
	out = binary.BigEndian.AppendUint32(out, m.SignedPreKeyID)
	if m.OneTimePreKeyID != nil {
		out = append(out, 1)
		out = binary.BigEndian.AppendUint32(out, *m.OneTimePreKeyID)
	} else {
		out = append(out, 0)
	}
	out = binary.BigEndian.AppendUint32(out, m.KEMPreKeyID)
	return append(out, m.KEMCiphertext[:]...)
}

// ReadInitialMessage decodes an initial message from r.
func ReadInitialMessage(r *wire.Reader) *InitialMessage {
	var m InitialMessage
	r.Fixed(m.IdentityKey[:])
	r.Fixed(m.EphemeralKey[:])
	m.SignedPreKeyID = r.U32()
	switch r.U8() {
	case 0:
	case 1:
		id := r.U32()
		m.OneTimePreKeyID = &id
	default:
		r.Failf("%w: bad one-time prekey flag", ErrBadInitialMessage)
	}
	m.KEMPreKeyID = r.U32()
	r.Fixed(m.KEMCiphertext[:])
	return &m
}

// UnmarshalInitialMessage decodes a whole initial message.
func UnmarshalInitialMessage(data []byte) (*InitialMessage, error) {
	r := wire.NewReader(data)
	m := ReadInitialMessage(r)
	if err := r.Finish(); err != nil {
		return nil, fmt.Errorf("pqxdh: initial message: %w", err)
	}
	return m, nil
}
