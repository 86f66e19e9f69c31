package session

import (
	"fmt"

	"github.com/chatd/chatd/internal/e2e/envelope"
	"github.com/chatd/chatd/internal/e2e/senderkey"
)

// SealGroup encrypts c once for every member holding the sender's chain.
func SealGroup(s *senderkey.Sender, c *envelope.Content) ([]byte, error) {
	if c.Type == envelope.ContentSenderKey {
		// A chain key sent under a sender key would reach everyone who
		// could read it anyway, including removed members; distributions
		// go over 1:1 sessions only.
		return nil, fmt.Errorf("%w: sender-key distribution in a group message", ErrKind)
	}
	msg, err := s.Encrypt(c.Marshal())
	if err != nil {
		return nil, err
	}
	e := envelope.Envelope{Kind: envelope.KindSenderKey, Message: msg}
	return e.Marshal()
}

// OpenGroup decrypts a sender-key envelope. A failure leaves r unchanged.
func OpenGroup(r *senderkey.Receiver, body []byte) (*envelope.Content, error) {
	e, err := envelope.Unmarshal(body)
	if err != nil {
		return nil, err
	}
	if e.Kind != envelope.KindSenderKey {
		return nil, fmt.Errorf("%w: %s, want sender-key", ErrKind, e.Kind)
	}
	pt, err := r.Decrypt(e.Message)
	if err != nil {
		return nil, err
	}
	c, err := envelope.UnmarshalContent(pt)
	if err != nil {
		return nil, err
	}
	if c.Type != envelope.ContentBody {
		return nil, fmt.Errorf("%w: content type %d in a group message", ErrKind, c.Type)
	}
	return c, nil
}

// Distribution wraps the sender's chain as Content for a 1:1 Seal.
func Distribution(s *senderkey.Sender) *envelope.Content {
	return &envelope.Content{Type: envelope.ContentSenderKey, Body: s.Distribution().Marshal()}
}
