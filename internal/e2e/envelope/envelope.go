// Package envelope defines the bytes an end-to-end encrypted chatd message
// body carries: a version, a kind, and the kind's payload (a PQXDH initial
// message with the first ratchet message, a ratchet message, or a sender-key
// message). It also defines Content, the padded plaintext inside those
// messages, which says whether the sender wrote application bytes or handed
// over a sender key.
//
// The server sees only the envelope's version and kind. ENVELOPE.md has the
// layouts byte for byte.
package envelope

import (
	"errors"
	"fmt"

	"github.com/chatd/chatd/internal/e2e/internal/wire"
	"github.com/chatd/chatd/internal/e2e/pqxdh"
	"github.com/chatd/chatd/internal/e2e/ratchet"
	"github.com/chatd/chatd/internal/e2e/senderkey"
)

// Version is the envelope format version, the first byte of every envelope.
const Version = 1

// Kind says what an envelope carries.
type Kind uint8

const (
	// KindPreKey starts (or keeps starting) a 1:1 session: a PQXDH initial
	// message followed by a ratchet message. The initiator sends this kind
	// until it has decrypted a reply.
	KindPreKey Kind = 1
	// KindRatchet is a ratchet message in an established 1:1 session.
	KindRatchet Kind = 2
	// KindSenderKey is a group message under a sender key.
	KindSenderKey Kind = 3
	// KindPreKeyHE is KindPreKey for a session whose ratchet encrypts its
	// headers: the kind is how the responder learns the initiator chose
	// header encryption, and both sides then derive header keys.
	KindPreKeyHE Kind = 4
	// KindRatchetHE is KindRatchet in a header-encrypted session.
	KindRatchetHE Kind = 5
)

// HeaderEncrypted reports whether the kind carries a header-encrypted
// ratchet message.
func (k Kind) HeaderEncrypted() bool { return k == KindPreKeyHE || k == KindRatchetHE }

// PreKey reports whether the kind carries a PQXDH initial message.
func (k Kind) PreKey() bool { return k == KindPreKey || k == KindPreKeyHE }

func (k Kind) String() string {
	switch k {
	case KindPreKey:
		return "prekey"
	case KindRatchet:
		return "ratchet"
	case KindSenderKey:
		return "sender-key"
	case KindPreKeyHE:
		return "prekey-he"
	case KindRatchetHE:
		return "ratchet-he"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// ErrMalformed reports an envelope that does not decode.
var ErrMalformed = errors.New("envelope: malformed")

// Envelope is a decoded message body.
type Envelope struct {
	Kind Kind
	// Initial is set for KindPreKey and KindPreKeyHE.
	Initial *pqxdh.InitialMessage
	// Message is the ratchet message (KindPreKey, KindRatchet) or the
	// sender-key message (KindSenderKey).
	Message []byte
}

// Marshal encodes the envelope.
func (e *Envelope) Marshal() ([]byte, error) {
	out := []byte{Version, byte(e.Kind)}
	switch e.Kind {
	case KindPreKey, KindPreKeyHE:
		if e.Initial == nil {
			return nil, fmt.Errorf("%w: prekey envelope without initial message", ErrMalformed)
		}
		out = append(out, e.Initial.Marshal()...)
	case KindRatchet, KindRatchetHE, KindSenderKey:
		if e.Initial != nil {
			return nil, fmt.Errorf("%w: initial message in a %s envelope", ErrMalformed, e.Kind)
		}
	default:
		return nil, fmt.Errorf("%w: %s", ErrMalformed, e.Kind)
	}
	return append(out, e.Message...), nil
}

// Unmarshal decodes an envelope. It checks the layout and the payload's
// minimum size only; the ratchet or sender-key layer authenticates it.
func Unmarshal(data []byte) (*Envelope, error) {
	r := wire.NewReader(data)
	if v := r.U8(); v != Version {
		r.Failf("%w: version %d", ErrMalformed, v)
	}
	e := &Envelope{Kind: Kind(r.U8())}
	min := 0
	switch e.Kind {
	case KindPreKey:
		e.Initial = pqxdh.ReadInitialMessage(r)
		min = ratchet.Overhead
	case KindRatchet:
		min = ratchet.Overhead
	case KindPreKeyHE:
		e.Initial = pqxdh.ReadInitialMessage(r)
		min = ratchet.HEOverhead
	case KindRatchetHE:
		min = ratchet.HEOverhead
	case KindSenderKey:
		min = senderkey.Overhead
	default:
		r.Failf("%w: %s", ErrMalformed, e.Kind)
	}
	e.Message = r.Rest()
	if err := r.Finish(); err != nil {
		return nil, fmt.Errorf("envelope: %w", err)
	}
	if len(e.Message) < min {
		return nil, fmt.Errorf("%w: %s message of %d bytes", ErrMalformed, e.Kind, len(e.Message))
	}
	return e, nil
}
