package secure

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"golang.org/x/crypto/curve25519"
)

// Key sets across a cluster. The nodes of a cluster serve one key set,
// either from shared key files or from copies on each node. After one
// node rotates or retires, the others adopt the set it now holds
// (Adopt): with shared files theirs already are that set and they only
// read them again; with copies they write their own files to match. The
// set travels as MarshalKeys' bytes, which hold private keys: the caller
// seals them (the server does, under the cluster secret).

// MarshalKeys encodes what LoadKeys reads from the files:
//
//	current private [32] | next flag u8 | (next private [32] | next from u64 ms) |
//	retired public [32]...
func MarshalKeys(k *Keys) []byte {
	b := append([]byte(nil), k.Current.Private...)
	if k.Next == nil {
		b = append(b, 0)
	} else {
		b = append(append(b, 1), k.Next.Private...)
		b = binary.BigEndian.AppendUint64(b, uint64(k.NextFrom.UnixMilli()))
	}
	for _, r := range k.Retired {
		b = append(b, r...)
	}
	return b
}

// UnmarshalKeys decodes MarshalKeys' bytes (without the rotation's
// signature, which LoadKeys makes).
func UnmarshalKeys(b []byte) (*Keys, error) {
	bad := errors.New("secure: malformed key set")
	if len(b) < 33 {
		return nil, bad
	}
	cur, err := keypairOf(b[:32])
	if err != nil {
		return nil, err
	}
	k := &Keys{Current: cur}
	rest := b[33:]
	switch b[32] {
	case 0:
	case 1:
		if len(rest) < 40 {
			return nil, bad
		}
		next, err := keypairOf(rest[:32])
		if err != nil {
			return nil, err
		}
		k.Next, k.NextFrom = &next, time.UnixMilli(int64(binary.BigEndian.Uint64(rest[32:40])))
		rest = rest[40:]
	default:
		return nil, bad
	}
	if len(rest)%32 != 0 {
		return nil, bad
	}
	for ; len(rest) > 0; rest = rest[32:] {
		k.Retired = append(k.Retired, bytes.Clone(rest[:32]))
	}
	return k, nil
}

func keypairOf(priv []byte) (Keypair, error) {
	pub, err := curve25519.X25519(priv, curve25519.Basepoint)
	if err != nil {
		return Keypair{}, fmt.Errorf("secure: key set: %w", err)
	}
	return Keypair{Private: bytes.Clone(priv), Public: pub}, nil
}

// ErrKeysDiverged refuses a key set that does not follow from the one at
// hand: its current key is neither this node's current key nor one that
// retired it, or this node is ahead of it.
var ErrKeysDiverged = errors.New("secure: the key sets differ in a way no rotation explains")

// Adopt makes the key files at path hold want and returns them loaded
// (signed again). want must be the files' set or a later step of it: the
// same current key with a rotation started (or the same one), or a
// current key that retired this one. A node that holds a different key
// altogether (its files were never copied), or is ahead of want, is left
// alone with ErrKeysDiverged. The writes go in Retire's crash-safe
// order: LoadKeys finishes a retirement cut short.
func Adopt(path string, want *Keys) (*Keys, error) {
	have, _, err := LoadKeys(path)
	if err != nil {
		return nil, err
	}
	if sameKeys(have, want) {
		return have, nil
	}
	if !bytes.Equal(have.Current.Public, want.Current.Public) {
		// want retired this node's current key (and maybe more after it).
		if !want.IsRetired(have.Current.Public) {
			return nil, fmt.Errorf("%w: this node's key %x is not among those the set %x retired", ErrKeysDiverged,
				have.Current.Public, want.Current.Public)
		}
		// As a rotation to want's current key, then its retirement.
		next := binary.BigEndian.AppendUint64(bytes.Clone(want.Current.Private), 0)
		if err := writeReplace(path+".next", next); err != nil {
			return nil, err
		}
		if err := writeReplace(path+".retired", bytes.Join(want.Retired, nil)); err != nil {
			return nil, err
		}
		if err := finishRetire(path, &want.Current); err != nil {
			return nil, err
		}
		if have, _, err = LoadKeys(path); err != nil {
			return nil, err
		}
	}
	if !slices.EqualFunc(have.Retired, want.Retired, bytes.Equal) {
		if len(have.Retired) > len(want.Retired) || !slices.EqualFunc(have.Retired, want.Retired[:len(have.Retired)], bytes.Equal) {
			return nil, fmt.Errorf("%w: this node retired keys the set did not", ErrKeysDiverged)
		}
		if err := writeReplace(path+".retired", bytes.Join(want.Retired, nil)); err != nil {
			return nil, err
		}
	}
	switch {
	case want.Next == nil && have.Next != nil:
		return nil, fmt.Errorf("%w: this node already rotated to %x", ErrKeysDiverged, have.Next.Public)
	case want.Next != nil && (have.Next == nil || !bytes.Equal(have.Next.Public, want.Next.Public) || !have.NextFrom.Equal(want.NextFrom)):
		if have.Next != nil && !bytes.Equal(have.Next.Public, want.Next.Public) {
			return nil, fmt.Errorf("%w: this node rotated to %x, the set to %x", ErrKeysDiverged, have.Next.Public, want.Next.Public)
		}
		next := binary.BigEndian.AppendUint64(bytes.Clone(want.Next.Private), uint64(want.NextFrom.UnixMilli()))
		if err := writeReplace(path+".next", next); err != nil {
			return nil, err
		}
	}
	k, _, err := LoadKeys(path)
	if err != nil {
		return nil, err
	}
	if !sameKeys(k, want) {
		return nil, fmt.Errorf("secure: adopting the key set left %x, not %x", k.Current.Public, want.Current.Public)
	}
	return k, nil
}

// sameKeys compares two sets' keys (not their signatures).
func sameKeys(a, b *Keys) bool {
	if !bytes.Equal(a.Current.Private, b.Current.Private) || (a.Next == nil) != (b.Next == nil) ||
		!slices.EqualFunc(a.Retired, b.Retired, bytes.Equal) {
		return false
	}
	return a.Next == nil || (bytes.Equal(a.Next.Private, b.Next.Private) && a.NextFrom.Equal(b.NextFrom))
}
