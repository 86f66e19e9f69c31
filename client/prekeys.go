package client

import (
	"crypto/ecdh"
	"crypto/mlkem"
	"crypto/rand"
	"fmt"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/e2e/pqxdh"
	"github.com/chatd/chatd/internal/e2e/xeddsa"
)

// DeviceKeys is one device's end-to-end key material, private halves
// included: an X25519 identity key, a signed X25519 prekey, a signed
// ML-KEM-1024 last-resort key and the one-time prekeys generated so far.
// It builds the KEYS_UPLOAD frames that publish the public halves.
// Keeping it (on disk, across restarts) is the application's business.
type DeviceKeys struct {
	Identity   *ecdh.PrivateKey
	SignedID   uint32
	Signed     *ecdh.PrivateKey
	LastID     uint32
	LastResort *mlkem.DecapsulationKey1024
	// One-time prekeys by id, until the application drops the ones used.
	EC  map[uint32]*ecdh.PrivateKey
	KEM map[uint32]*mlkem.DecapsulationKey1024

	nextID uint32 // one counter for every kind: ids are never reused
}

// NewDeviceKeys generates a device's long-lived keys.
func NewDeviceKeys() (*DeviceKeys, error) {
	d := &DeviceKeys{EC: map[uint32]*ecdh.PrivateKey{}, KEM: map[uint32]*mlkem.DecapsulationKey1024{}}
	var err error
	if d.Identity, err = ecdh.X25519().GenerateKey(rand.Reader); err != nil {
		return nil, fmt.Errorf("client: identity key: %w", err)
	}
	if err := d.Rotate(); err != nil {
		return nil, err
	}
	return d, nil
}

// Rotate replaces the signed prekey and the last-resort key (Signal
// rotates both every two days).
func (d *DeviceKeys) Rotate() error {
	spk, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("client: signed prekey: %w", err)
	}
	lr, err := mlkem.GenerateKey1024()
	if err != nil {
		return fmt.Errorf("client: last-resort key: %w", err)
	}
	d.SignedID, d.Signed = d.id(), spk
	d.LastID, d.LastResort = d.id(), lr
	return nil
}

func (d *DeviceKeys) id() uint32 { d.nextID++; return d.nextID }

func (d *DeviceKeys) sign(alg byte, id uint32, pub []byte) (codec.Signature, error) {
	var z [xeddsa.RandomSize]byte
	rand.Read(z[:])
	sig, err := xeddsa.Sign(d.Identity.Bytes(), codec.SignedMessage(alg, pub), z[:])
	if err != nil {
		return codec.Signature{}, fmt.Errorf("client: sign prekey %d: %w", id, err)
	}
	return codec.Signature(sig), nil
}

// IdentityKey returns the public identity key.
func (d *DeviceKeys) IdentityKey() codec.ECKey { return codec.ECKey(d.Identity.PublicKey().Bytes()) }

// SignedKey returns the public signed prekey with its signature.
func (d *DeviceKeys) SignedKey() (codec.SignedECKey, error) {
	k := codec.SignedECKey{ID: d.SignedID, Key: codec.ECKey(d.Signed.PublicKey().Bytes())}
	var err error
	k.Sig, err = d.sign(codec.AlgX25519, k.ID, k.Key[:])
	return k, err
}

// LastResortKey returns the public last-resort key with its signature.
func (d *DeviceKeys) LastResortKey() (codec.KEMPreKey, error) {
	k := codec.KEMPreKey{ID: d.LastID, Key: d.LastResort.EncapsulationKey().Bytes()}
	var err error
	k.Sig, err = d.sign(codec.AlgMLKEM1024, k.ID, k.Key)
	return k, err
}

// Digest is what KEYS_CHECK compares with the server's copy.
func (d *DeviceKeys) Digest() codec.Digest {
	id := d.IdentityKey()
	spk := codec.SignedECKey{ID: d.SignedID, Key: codec.ECKey(d.Signed.PublicKey().Bytes())}
	lr := codec.KEMPreKey{ID: d.LastID, Key: d.LastResort.EncapsulationKey().Bytes()}
	return codec.KeysDigest(&id, &spk, &lr)
}

// Uploads generates ec one-time EC prekeys and kem one-time KEM prekeys
// and returns the KEYS_UPLOAD frames that publish them, each within the
// per-frame bounds (codec.MaxUploadEC, codec.MaxUploadKEM). With
// longLived the first frame also carries the signed prekey and the
// last-resort key, as the first upload and one after Rotate must.
func (d *DeviceKeys) Uploads(longLived bool, ec, kem int) ([]*codec.KeysUpload, error) {
	identity := d.IdentityKey()
	first := &codec.KeysUpload{Identity: identity}
	if longLived {
		spk, err := d.SignedKey()
		if err != nil {
			return nil, err
		}
		lr, err := d.LastResortKey()
		if err != nil {
			return nil, err
		}
		first.Signed, first.LastResort = &spk, &lr
	}
	ups := []*codec.KeysUpload{first}
	cur := func() *codec.KeysUpload { return ups[len(ups)-1] }
	for range ec {
		if len(cur().EC) == codec.MaxUploadEC {
			ups = append(ups, &codec.KeysUpload{Identity: identity})
		}
		priv, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("client: EC prekey: %w", err)
		}
		id := d.id()
		d.EC[id] = priv
		u := cur()
		u.EC = append(u.EC, codec.ECPreKey{ID: id, Key: codec.ECKey(priv.PublicKey().Bytes())})
	}
	next := 0 // KEM keys fill the frames from the first again: they are the bulk
	for range kem {
		if next < len(ups) && len(ups[next].KEM) == codec.MaxUploadKEM {
			next++
		}
		if next == len(ups) {
			ups = append(ups, &codec.KeysUpload{Identity: identity})
		}
		priv, err := mlkem.GenerateKey1024()
		if err != nil {
			return nil, fmt.Errorf("client: KEM prekey: %w", err)
		}
		id := d.id()
		d.KEM[id] = priv
		k := codec.KEMPreKey{ID: id, Key: priv.EncapsulationKey().Bytes()}
		if k.Sig, err = d.sign(codec.AlgMLKEM1024, id, k.Key); err != nil {
			return nil, err
		}
		ups[next].KEM = append(ups[next].KEM, k)
	}
	return ups, nil
}

// VerifyBundle checks a fetched bundle's signatures against its identity
// key; the caller also checks that identity key against the one it knows
// for that peer (trust on first use, or a verified safety number).
func VerifyBundle(b *codec.Bundle) error {
	if !xeddsa.Verify(b.Identity[:], codec.SignedMessage(codec.AlgX25519, b.Signed.Key[:]), b.Signed.Sig[:]) {
		return fmt.Errorf("client: device %d: bad signature on signed prekey %d", b.Device, b.Signed.ID)
	}
	if !xeddsa.Verify(b.Identity[:], codec.SignedMessage(codec.AlgMLKEM1024, b.KEM.Key), b.KEM.Sig[:]) {
		return fmt.Errorf("client: device %d: bad signature on KEM prekey %d", b.Device, b.KEM.ID)
	}
	return nil
}

// PQXDHBundle converts a fetched bundle to the form pqxdh.Initiate takes
// (which verifies its signatures again and aborts on a bad one).
func PQXDHBundle(b *codec.Bundle) *pqxdh.Bundle {
	p := &pqxdh.Bundle{
		IdentityKey:  b.Identity,
		SignedPreKey: pqxdh.SignedPreKey{ID: b.Signed.ID, Public: b.Signed.Key, Signature: b.Signed.Sig},
		KEMPreKey:    pqxdh.KEMPreKey{ID: b.KEM.ID, Signature: b.KEM.Sig},
	}
	copy(p.KEMPreKey.Public[:], b.KEM.Key)
	if b.EC != nil {
		p.OneTimePreKey = &pqxdh.OneTimePreKey{ID: b.EC.ID, Public: b.EC.Key}
	}
	return p
}

// Respond runs the responder's side of PQXDH for an initial message made
// against one of this device's bundles, picking the private keys by the
// ids it names. The one-time keys it used are deleted from d: each serves
// one session.
func (d *DeviceKeys) Respond(m *pqxdh.InitialMessage) (*pqxdh.Secret, error) {
	if m.SignedPreKeyID != d.SignedID {
		return nil, fmt.Errorf("client: initial message names signed prekey %d, not the current %d", m.SignedPreKeyID, d.SignedID)
	}
	spk := &pqxdh.SignedPreKeyPrivate{ID: d.SignedID, Key: d.Signed}
	var opk *pqxdh.OneTimePreKeyPrivate
	if m.OneTimePreKeyID != nil {
		k := d.EC[*m.OneTimePreKeyID]
		if k == nil {
			return nil, fmt.Errorf("client: no one-time prekey %d (used already?)", *m.OneTimePreKeyID)
		}
		opk = &pqxdh.OneTimePreKeyPrivate{ID: *m.OneTimePreKeyID, Key: k}
	}
	kem := &pqxdh.KEMPreKeyPrivate{ID: m.KEMPreKeyID, LastResort: m.KEMPreKeyID == d.LastID, Key: d.LastResort}
	if !kem.LastResort {
		if kem.Key = d.KEM[m.KEMPreKeyID]; kem.Key == nil {
			return nil, fmt.Errorf("client: no KEM prekey %d (used already?)", m.KEMPreKeyID)
		}
	}
	s, err := pqxdh.Respond(d.Identity, spk, opk, kem, m)
	if err != nil {
		return nil, err
	}
	if opk != nil {
		delete(d.EC, opk.ID)
	}
	if !kem.LastResort {
		delete(d.KEM, kem.ID)
	}
	return s, nil
}
