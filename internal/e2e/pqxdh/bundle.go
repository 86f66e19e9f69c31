package pqxdh

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/chatd/chatd/internal/e2e/internal/wire"
)

// bundleVersion is the first byte of a marshalled Bundle.
const bundleVersion = 1

// SignedPreKey is the public, signed medium-term prekey (SPK_B).
type SignedPreKey struct {
	ID        uint32
	Public    [KeySize]byte
	Signature [SignatureSize]byte
}

// OneTimePreKey is a public one-time EC prekey (OPK_B).
type OneTimePreKey struct {
	ID     uint32
	Public [KeySize]byte
}

// KEMPreKey is a public, signed ML-KEM-1024 prekey (PQPK_B), one-time or
// last-resort.
type KEMPreKey struct {
	ID        uint32
	Public    [KEMPublicKeySize]byte
	Signature [SignatureSize]byte
}

// Bundle is what the key directory hands Alice to start a session with one
// of Bob's devices.
type Bundle struct {
	IdentityKey   [KeySize]byte
	SignedPreKey  SignedPreKey
	OneTimePreKey *OneTimePreKey // nil when Bob's one-time keys ran out
	KEMPreKey     KEMPreKey
}

// BundleSize is the size of a marshalled bundle with a one-time prekey; one
// without is 36 bytes shorter.
const BundleSize = 1 + KeySize + (4 + KeySize + SignatureSize) + 1 + (4 + KeySize) + (4 + KEMPublicKeySize + SignatureSize)

// ErrBadBundle reports a bundle that does not decode.
var ErrBadBundle = errors.New("pqxdh: malformed bundle")

// Marshal encodes the bundle (layout in ENVELOPE.md, "Prekey bundle").
func (b *Bundle) Marshal() []byte {
	out := make([]byte, 0, BundleSize)
	out = append(out, bundleVersion)
	out = append(out, b.IdentityKey[:]...)
	out = binary.BigEndian.AppendUint32(out, b.SignedPreKey.ID)
	out = append(out, b.SignedPreKey.Public[:]...)
	out = append(out, b.SignedPreKey.Signature[:]...)
	if b.OneTimePreKey != nil {
		out = append(out, 1)
		out = binary.BigEndian.AppendUint32(out, b.OneTimePreKey.ID)
		out = append(out, b.OneTimePreKey.Public[:]...)
	} else {
		out = append(out, 0)
	}
	out = binary.BigEndian.AppendUint32(out, b.KEMPreKey.ID)
	out = append(out, b.KEMPreKey.Public[:]...)
	return append(out, b.KEMPreKey.Signature[:]...)
}

// UnmarshalBundle decodes a bundle. It checks the layout only; Initiate
// checks the keys and signatures.
func UnmarshalBundle(data []byte) (*Bundle, error) {
	r := wire.NewReader(data)
	if v := r.U8(); v != bundleVersion {
		r.Failf("%w: version %d", ErrBadBundle, v)
	}
	var b Bundle
	r.Fixed(b.IdentityKey[:])
	b.SignedPreKey.ID = r.U32()
	r.Fixed(b.SignedPreKey.Public[:])
	r.Fixed(b.SignedPreKey.Signature[:])
	switch r.U8() {
	case 0:
	case 1:
		b.OneTimePreKey = &OneTimePreKey{ID: r.U32()}
		r.Fixed(b.OneTimePreKey.Public[:])
	default:
		r.Failf("%w: bad one-time prekey flag", ErrBadBundle)
	}
	b.KEMPreKey.ID = r.U32()
	r.Fixed(b.KEMPreKey.Public[:])
	r.Fixed(b.KEMPreKey.Signature[:])
	if err := r.Finish(); err != nil {
		return nil, fmt.Errorf("pqxdh: bundle: %w", err)
	}
	return &b, nil
}
