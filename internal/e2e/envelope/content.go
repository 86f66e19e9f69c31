package envelope

import (
	"encoding/binary"
	"fmt"

	"github.com/chatd/chatd/internal/e2e/internal/wire"
)

// ContentType says what a decrypted plaintext holds.
type ContentType uint8

const (
	// ContentBody is application bytes (the chat message itself).
	ContentBody ContentType = 1
	// ContentSenderKey is a senderkey.Distribution. It only ever travels
	// inside a 1:1 ratchet message, since it carries a chain key.
	ContentSenderKey ContentType = 2
)

// PadBlock is the granularity the padded plaintext is rounded up to, so the
// ciphertext length tells an observer the message size only roughly.
const PadBlock = 64

// Content is the plaintext inside a ratchet or sender-key message.
type Content struct {
	Type ContentType
	Body []byte
}

// Marshal encodes type, length and body, zero-padded to a multiple of
// PadBlock.
func (c *Content) Marshal() []byte {
	p := padded(len(c.Body))
	out := make([]byte, 0, p)
	out = append(out, byte(c.Type))
	out = binary.BigEndian.AppendUint32(out, uint32(len(c.Body)))
	out = append(out, c.Body...)
	return out[:p] // the capacity was zeroed by make
}

// padded is the marshalled size of a body of n bytes.
func padded(n int) int {
	return (1 + 4 + n + PadBlock - 1) / PadBlock * PadBlock
}

// UnmarshalContent decodes a plaintext. Padding must be zero bytes and
// exactly as long as Marshal makes it: the plaintext is authenticated, so
// anything else is a bug on the sender's side, not noise to ignore.
func UnmarshalContent(data []byte) (*Content, error) {
	r := wire.NewReader(data)
	c := &Content{Type: ContentType(r.U8())}
	if c.Type != ContentBody && c.Type != ContentSenderKey {
		r.Failf("%w: content type %d", ErrMalformed, c.Type)
	}
	c.Body = r.Bytes32()
	if want := padded(len(c.Body)) - 5 - len(c.Body); r.Len() != want {
		r.Failf("%w: %d bytes of padding, want %d", ErrMalformed, r.Len(), want)
	}
	for _, b := range r.Rest() {
		if b != 0 {
			r.Failf("%w: non-zero padding", ErrMalformed)
			break
		}
	}
	if err := r.Finish(); err != nil {
		return nil, fmt.Errorf("envelope: content: %w", err)
	}
	return c, nil
}
