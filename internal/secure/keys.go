package secure

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/curve25519"
)

// Keys are the static keys a server answers handshakes with. Outside a
// rotation there is one, Current. A rotation adds Next: both are accepted
// until the operator retires Current, when Next takes its place and
// Current's public half joins Retired, so that a client still pinned to
// it is told why it is refused instead of failing a pin check.
//
// On disk, beside the key file K (DATA/noise.key):
//
//	K          the current private key (32 bytes)
//	K.next     the next private key (32 bytes), then when it became
//	           valid (u64 big-endian unix milliseconds)
//	K.retired  retired public keys, 32 bytes each, oldest first
type Keys struct {
	Current  Keypair
	Next     *Keypair // nil outside a rotation
	NextFrom time.Time
	Retired  [][]byte
	// Rotation is Current's signed announcement of Next (nil outside a
	// rotation), made when the keys are loaded.
	Rotation *Rotation
}

// Rotation is a server key announcing its successor: the signature by Old
// (XEdDSA) covers RotationMessage(Old, New, ValidFrom).
type Rotation struct {
	Old, New  []byte
	ValidFrom time.Time
	Sig       []byte
}

// rotationContext opens every signed rotation message, so that no other
// message a key might sign one day reads as a rotation.
const rotationContext = "chatd key rotation v1"

// RotationMessage is what a rotation's signature covers:
// "chatd key rotation v1" | old [32] | new [32] | valid_from u64 (ms).
func RotationMessage(old, new []byte, validFrom time.Time) []byte {
	m := make([]byte, 0, len(rotationContext)+72)
	m = append(m, rotationContext...)
	m = append(m, old...)
	m = append(m, new...)
	return binary.BigEndian.AppendUint64(m, uint64(validFrom.UnixMilli()))
}

// VerifyRotation checks an announcement against the key a client has
// pinned: it must name that key as the old one, be signed by it, and
// name a different, well-formed new key.
func VerifyRotation(pinned []byte, r Rotation) error {
	switch {
	case len(pinned) != 32 || !bytes.Equal(r.Old, pinned):
		return errors.New("secure: the rotation is from a key that is not the pinned one")
	case len(r.New) != 32 || bytes.Equal(r.New, r.Old):
		return errors.New("secure: the rotation names no new key")
	case !Verify(r.Old, RotationMessage(r.Old, r.New, r.ValidFrom), r.Sig):
		return errors.New("secure: the rotation's signature is not the pinned key's")
	}
	return nil
}

// For returns the key a client asks for by its public half: Next when it
// names Next, else Current (a client that names nothing, or a key this
// server does not hold, gets Current and its own pin check decides).
func (k *Keys) For(public []byte) Keypair {
	if k.Next != nil && bytes.Equal(public, k.Next.Public) {
		return *k.Next
	}
	return k.Current
}

// IsRetired reports whether public is a key this server retired.
func (k *Keys) IsRetired(public []byte) bool {
	for _, r := range k.Retired {
		if bytes.Equal(r, public) {
			return true
		}
	}
	return false
}

// Keyring holds the keys a running server uses; a rotation swaps them
// whole, and handshakes under way keep the set they started with.
type Keyring struct{ p atomic.Pointer[Keys] }

// NewKeyring holds k.
func NewKeyring(k *Keys) *Keyring {
	r := &Keyring{}
	r.p.Store(k)
	return r
}

// Keys returns the current set.
func (r *Keyring) Keys() *Keys { return r.p.Load() }

// Set replaces the set.
func (r *Keyring) Set(k *Keys) { r.p.Store(k) }

// LoadKeys reads the keys kept at path (creating the current key on first
// start, like LoadOrCreateKey) and signs the rotation if one is under way.
// A retirement that a crash interrupted is finished.
func LoadKeys(path string) (k *Keys, created bool, err error) {
	cur, created, err := LoadOrCreateKey(path)
	if err != nil {
		return nil, false, err
	}
	k = &Keys{Current: cur}
	if k.Retired, err = readRetired(path + ".retired"); err != nil {
		return nil, false, err
	}
	next, from, err := readNext(path + ".next")
	if err != nil {
		return nil, false, err
	}
	if next != nil && (bytes.Equal(next.Private, cur.Private) || k.IsRetired(cur.Public)) {
		// Retire stopped after recording the old key: finish it.
		if err := finishRetire(path, next); err != nil {
			return nil, false, err
		}
		return LoadKeys(path)
	}
	if next != nil {
		k.Next, k.NextFrom = next, from
		sig, err := Sign(cur.Private, RotationMessage(cur.Public, next.Public, from), rand.Reader)
		if err != nil {
			return nil, false, err
		}
		k.Rotation = &Rotation{Old: cur.Public, New: next.Public, ValidFrom: from, Sig: sig}
	}
	return k, created, nil
}

// Rotate makes the next key at path, valid from now, and returns the keys
// with it. It refuses while a rotation is under way: the old key must be
// retired first, so that a client is never more than one step behind.
func Rotate(path string, now time.Time) (*Keys, error) {
	k, _, err := LoadKeys(path)
	if err != nil {
		return nil, err
	}
	if k.Next != nil {
		return nil, fmt.Errorf("secure: key %x already waits to replace %x: retire the old key first", k.Next.Public, k.Current.Public)
	}
	next, err := GenerateKeypair()
	if err != nil {
		return nil, fmt.Errorf("secure: generate key: %w", err)
	}
	b := binary.BigEndian.AppendUint64(bytes.Clone(next.Private), uint64(now.UnixMilli()))
	if err := WriteKeyFile(path+".next", b); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, errors.New("secure: another rotation made a next key at the same moment; run the command again to see it")
		}
		return nil, err
	}
	k, _, err = LoadKeys(path)
	return k, err
}

// Retire ends a rotation at path: the next key becomes the current one,
// and the old key's public half is kept as retired.
func Retire(path string) (*Keys, error) {
	k, _, err := LoadKeys(path)
	if err != nil {
		return nil, err
	}
	if k.Next == nil {
		return nil, errors.New("secure: no new key to move to: rotate first")
	}
	// The order makes a crash at any step safe: LoadKeys finishes a
	// retirement once the old key is recorded as retired.
	if !k.IsRetired(k.Current.Public) {
		if err := appendSynced(path+".retired", k.Current.Public); err != nil {
			return nil, err
		}
	}
	if err := finishRetire(path, k.Next); err != nil {
		return nil, err
	}
	k, _, err = LoadKeys(path)
	return k, err
}

// finishRetire puts next in place of the current key and removes the
// next-key file.
func finishRetire(path string, next *Keypair) error {
	if err := writeReplace(path, next.Private); err != nil {
		return err
	}
	if err := os.Remove(path + ".next"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("secure: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

func readNext(path string) (*Keypair, time.Time, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, time.Time{}, nil
	}
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("secure: read next key: %w", err)
	}
	if len(b) != 40 {
		return nil, time.Time{}, fmt.Errorf("secure: %s holds %d bytes, want a 32-byte private key and an 8-byte time", path, len(b))
	}
	pub, err := curve25519.X25519(b[:32], curve25519.Basepoint)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("secure: %s: %w", path, err)
	}
	from := time.UnixMilli(int64(binary.BigEndian.Uint64(b[32:])))
	return &Keypair{Private: b[:32:32], Public: pub}, from, nil
}

func readRetired(path string) ([][]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("secure: read retired keys: %w", err)
	}
	if len(b)%32 != 0 {
		return nil, fmt.Errorf("secure: %s holds %d bytes, not whole 32-byte keys", path, len(b))
	}
	var out [][]byte
	for ; len(b) > 0; b = b[32:] {
		out = append(out, b[:32:32])
	}
	return out, nil
}

// WriteKeyFile writes b to a new file at path (mode 0600), whole or not
// at all: to a temporary file, synced, then linked into place, which fails
// with os.ErrExist if path exists. A crash never leaves half a key, and
// processes starting at once on a shared key file (a cluster's nodes) all
// end up with the one linked first. The Noise keys and push's VAPID key
// are written with it.
func WriteKeyFile(path string, b []byte) error {
	tmp, err := writeTemp(path, b)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		return fmt.Errorf("secure: write %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

// writeReplace writes b at path (mode 0600), replacing what is there
// atomically.
func writeReplace(path string, b []byte) error {
	tmp, err := writeTemp(path, b)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("secure: write %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

func writeTemp(path string, b []byte) (string, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".key-*")
	if err != nil {
		return "", fmt.Errorf("secure: write %s: %w", path, err)
	}
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("secure: write %s: %w", path, err)
	}
	return tmp.Name(), nil
}

func appendSynced(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("secure: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("secure: write %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("secure: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("secure: sync %s: %w", dir, err)
	}
	return nil
}
