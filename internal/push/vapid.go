package push

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/chatd/chatd/internal/secure"
)

// VAPID is the server's P-256 key pair that signs every push request
// (RFC 8292). A subscription is bound to the public key the app handed its
// push service, so the key must outlive restarts, and every node of a
// cluster must hold the same one (copy the file, as with the Noise key).
type VAPID struct {
	Private []byte // the 32-byte scalar
	Public  []byte // uncompressed point, 65 bytes
}

// PublicBase64 is the public key as apps and push services spell it:
// base64url without padding.
func (v VAPID) PublicBase64() string { return base64.RawURLEncoding.EncodeToString(v.Public) }

func (v VAPID) privateBase64() string { return base64.RawURLEncoding.EncodeToString(v.Private) }

// LoadOrCreateVAPID reads the key file at path, or creates it when
// missing: 0600 in a 0700 folder, written whole to a temporary file and
// linked into place, exactly as the Noise key (package secure), so a crash
// never leaves half a key and nodes starting at once on a shared file end
// up with one key.
func LoadOrCreateVAPID(path string) (v VAPID, created bool, err error) {
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		k, err := ecdh.P256().NewPrivateKey(b)
		if err != nil {
			return v, false, fmt.Errorf("push: %s holds no P-256 private key: %w", path, err)
		}
		return VAPID{Private: b, Public: k.PublicKey().Bytes()}, false, nil
	case !errors.Is(err, os.ErrNotExist):
		return v, false, fmt.Errorf("push: read VAPID key: %w", err)
	}
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return v, false, fmt.Errorf("push: generate VAPID key: %w", err)
	}
	v = VAPID{Private: k.Bytes(), Public: k.PublicKey().Bytes()}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return v, false, fmt.Errorf("push: %w", err)
	}
	if err := secure.WriteKeyFile(path, v.Private); err != nil {
		if errors.Is(err, os.ErrExist) { // another process linked first: use its key
			return LoadOrCreateVAPID(path)
		}
		return v, false, fmt.Errorf("push: write VAPID key: %w", err)
	}
	return v, true, nil
}
