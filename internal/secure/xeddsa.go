package secure

import (
	"fmt"
	"io"

	"github.com/chatd/chatd/internal/e2e/xeddsa"
)

// XEdDSA (Signal's specification, "The XEdDSA and VXEdDSA Signature
// Schemes", revision 1) signs with an X25519 private key, so the server's
// Noise static key, the one clients pin, signs its own successor: no
// second key for clients to pin, and nothing to bind a separate signing
// key to the pinned one. The scheme is package xeddsa's, the one the
// end-to-end prekeys are signed with; these two wrap it for the key
// files' io.Reader of randomness.

// SignatureSize is the length of an XEdDSA signature: R then s.
const SignatureSize = 64

// Sign signs msg with an X25519 private key (XEdDSA). random supplies the
// 64 bytes of Z that make the nonce unpredictable even to someone who
// knows earlier signatures.
func Sign(private, msg []byte, random io.Reader) ([]byte, error) {
	var z [64]byte
	if _, err := io.ReadFull(random, z[:]); err != nil {
		return nil, fmt.Errorf("secure: sign: %w", err)
	}
	sig, err := xeddsa.Sign(private, msg, z[:])
	if err != nil {
		return nil, fmt.Errorf("secure: sign: %w", err)
	}
	return sig, nil
}

// Verify reports whether sig is an XEdDSA signature of msg by the X25519
// public key pub.
func Verify(pub, msg, sig []byte) bool { return xeddsa.Verify(pub, msg, sig) }
