package codec

// PublicKey is a 32-byte X25519 public key: a server's Noise static key.
type PublicKey [32]byte

// A KEY_ROTATE's signature is a Signature (keys.go), 64 bytes of XEdDSA.

func (w writer) sig64(s *Signature) writer { w.b = append(w.b, s[:]...); return w }

// sig64 reads a signature; takeSuffixed gives nil after a failure (fixed
// serves 32 bytes at most), which leaves the zero signature.
func (r *reader) sig64(v *Signature, what string) *reader {
	if p := r.takeSuffixed(64, what, ""); p != nil {
		*v = Signature(p)
	}
	return r
}

// KeyRotate is a server announcing, inside a session on its old static
// key, the key that replaces it: Old signs (XEdDSA) the bytes
// "chatd key rotation v1" | Old | New | ValidFrom, so that the
// announcement proves itself apart from the session it came in. A client
// pinned to Old checks the signature and pins New from ValidFrom (unix
// milliseconds) on. See PROTOCOL.md section 8.
type KeyRotate struct {
	Old       PublicKey
	New       PublicKey
	ValidFrom uint64
	Sig       Signature
}
