package device

import (
	"context"
	"crypto/ecdh"
	"crypto/mlkem"
	"crypto/rand"
	"fmt"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/e2e/pqxdh"
	"github.com/chatd/chatd/internal/e2e/xeddsa"
)

// Publish makes sure the directory holds this device's keys: the first
// time it uploads the long-lived keys and a batch of one-time prekeys;
// later it compares digests (KEYS_CHECK) and uploads the long-lived keys
// again if the server's copy differs (a restored server, a lost upload),
// or if it just replaced a signed prekey that was due (rotation.go).
// Private halves are committed before their public halves leave, so
// every key a peer may fetch can be opened.
func (d *Device) Publish(ctx context.Context, dir Directory, update Updater) error {
	var published, rotated bool
	var digest codec.Digest
	err := update(func(tx Tx) error {
		_, ok, err := tx.Get(keyPublished)
		published = ok
		if err != nil || !ok {
			return err
		}
		// The new private key is committed here, before its public half
		// is uploaded below.
		if rotated, err = d.rotateSignedIfDue(tx); err != nil {
			return err
		}
		up, err := d.longLived(tx)
		if err == nil {
			digest = codec.KeysDigest(&up.Identity, up.Signed, up.LastResort)
		}
		return err
	})
	if err != nil {
		return err
	}
	if published && !rotated {
		same, err := dir.CheckKeys(ctx, digest)
		if err != nil || same {
			return wrap("check keys", err)
		}
	}
	return d.upload(ctx, dir, update, true, !published)
}

// Refill answers KEYS_LOW: one more batch of one-time prekeys.
func (d *Device) Refill(ctx context.Context, dir Directory, update Updater) error {
	return d.upload(ctx, dir, update, false, true)
}

// upload publishes the long-lived keys (with longLived) and, with
// oneTime, a batch of one-time prekeys.
func (d *Device) upload(ctx context.Context, dir Directory, update Updater, longLived, oneTime bool) error {
	var ups []*codec.KeysUpload
	err := update(func(tx Tx) error {
		first := &codec.KeysUpload{}
		if longLived {
			var err error
			if first, err = d.longLived(tx); err != nil {
				return err
			}
		} else {
			ik, err := d.id()
			if err != nil {
				return err
			}
			first.Identity = codec.ECKey(ik.PublicKey().Bytes())
		}
		ups = []*codec.KeysUpload{first}
		if !oneTime {
			return nil
		}
		var err error
		ups, err = d.oneTime(tx, ups)
		return err
	})
	if err != nil {
		return err
	}
	for _, up := range ups {
		if _, err := dir.UploadKeys(ctx, up); err != nil {
			return wrap("upload keys", err)
		}
	}
	return update(func(tx Tx) error { return tx.Put(keyPublished, []byte{1}) })
}

// longLived returns a KEYS_UPLOAD carrying the identity key, the signed
// prekey and the last-resort key, signed.
func (d *Device) longLived(tx Tx) (*codec.KeysUpload, error) {
	ik, err := d.id()
	if err != nil {
		return nil, err
	}
	sid, spk, err := loadSigned(tx)
	if err != nil {
		return nil, err
	}
	lid, lr, err := loadLast(tx)
	if err != nil {
		return nil, err
	}
	up := &codec.KeysUpload{Identity: codec.ECKey(ik.PublicKey().Bytes())}
	s := codec.SignedECKey{ID: sid, Key: codec.ECKey(spk.PublicKey().Bytes())}
	if s.Sig, err = sign(ik, codec.AlgX25519, sid, s.Key[:]); err != nil {
		return nil, err
	}
	l := codec.KEMPreKey{ID: lid, Key: lr.EncapsulationKey().Bytes()}
	if l.Sig, err = sign(ik, codec.AlgMLKEM1024, lid, l.Key); err != nil {
		return nil, err
	}
	up.Signed, up.LastResort = &s, &l
	return up, nil
}

// oneTime makes a batch of one-time prekeys, stores their private halves
// and adds the public halves to ups (more frames when one is full).
func (d *Device) oneTime(tx Tx, ups []*codec.KeysUpload) ([]*codec.KeysUpload, error) {
	ik, err := d.id()
	if err != nil {
		return nil, err
	}
	identity := ups[0].Identity
	cur := ups[len(ups)-1]
	for range d.cfg.EC {
		if len(cur.EC) == codec.MaxUploadEC {
			cur = &codec.KeysUpload{Identity: identity}
			ups = append(ups, cur)
		}
		k, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			return nil, wrap("EC prekey", err)
		}
		id, err := nextID(tx)
		if err != nil {
			return nil, err
		}
		if err := tx.Put(keyEC(id), k.Bytes()); err != nil {
			return nil, err
		}
		cur.EC = append(cur.EC, codec.ECPreKey{ID: id, Key: codec.ECKey(k.PublicKey().Bytes())})
	}
	cur = ups[0]
	for range d.cfg.KEM {
		if len(cur.KEM) == codec.MaxUploadKEM {
			cur = &codec.KeysUpload{Identity: identity}
			ups = append(ups, cur)
		}
		k, err := mlkem.GenerateKey1024()
		if err != nil {
			return nil, wrap("KEM prekey", err)
		}
		id, err := nextID(tx)
		if err != nil {
			return nil, err
		}
		if err := tx.Put(keyKEM(id), k.Bytes()); err != nil {
			return nil, err
		}
		p := codec.KEMPreKey{ID: id, Key: k.EncapsulationKey().Bytes()}
		if p.Sig, err = sign(ik, codec.AlgMLKEM1024, id, p.Key); err != nil {
			return nil, err
		}
		cur.KEM = append(cur.KEM, p)
	}
	return ups, nil
}

// sign signs a prekey as the directory wants (PROTOCOL.md section 11).
func sign(ik *ecdh.PrivateKey, alg byte, id uint32, pub []byte) (codec.Signature, error) {
	var z [xeddsa.RandomSize]byte
	rand.Read(z[:])
	sig, err := xeddsa.Sign(ik.Bytes(), codec.SignedMessage(alg, pub), z[:])
	if err != nil {
		return codec.Signature{}, fmt.Errorf("e2e: sign prekey %d: %w", id, err)
	}
	return codec.Signature(sig), nil
}

// toBundle converts the directory's bundle to PQXDH's.
func toBundle(b *codec.Bundle) (*pqxdh.Bundle, error) {
	if len(b.KEM.Key) != codec.KEMKeyLen {
		return nil, fmt.Errorf("e2e: KEM prekey of %d bytes", len(b.KEM.Key))
	}
	p := &pqxdh.Bundle{IdentityKey: b.Identity}
	p.SignedPreKey = pqxdh.SignedPreKey{ID: b.Signed.ID, Public: b.Signed.Key, Signature: b.Signed.Sig}
	if b.EC != nil {
		p.OneTimePreKey = &pqxdh.OneTimePreKey{ID: b.EC.ID, Public: b.EC.Key}
	}
	p.KEMPreKey = pqxdh.KEMPreKey{ID: b.KEM.ID, Public: [pqxdh.KEMPublicKeySize]byte(b.KEM.Key), Signature: b.KEM.Sig}
	return p, nil
}

// preKeys finds this device's private prekeys in tx for session.Accept.
type preKeys struct{ tx Tx }

func (p preKeys) SignedPreKey(id uint32) (*pqxdh.SignedPreKeyPrivate, error) {
	sid, k, err := loadSigned(p.tx)
	if err != nil {
		return nil, err
	}
	if sid != id {
		// A bundle fetched before the last rotation: its key is kept
		// for the grace period.
		old, ok, err := loadOldSigned(p.tx, id)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("e2e: signed prekey %d is neither the current one (%d) nor a retired one still kept", id, sid)
		}
		k = old
	}
	return &pqxdh.SignedPreKeyPrivate{ID: id, Key: k}, nil
}

func (p preKeys) OneTimePreKey(id uint32) (*pqxdh.OneTimePreKeyPrivate, error) {
	b, ok, err := p.tx.Get(keyEC(id))
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("e2e: one-time prekey %d used or unknown", id)
	}
	k, err := ecdh.X25519().NewPrivateKey(b)
	if err != nil {
		return nil, wrap("one-time prekey", err)
	}
	return &pqxdh.OneTimePreKeyPrivate{ID: id, Key: k}, nil
}

func (p preKeys) KEMPreKey(id uint32) (*pqxdh.KEMPreKeyPrivate, error) {
	if lid, lr, err := loadLast(p.tx); err == nil && lid == id {
		return &pqxdh.KEMPreKeyPrivate{ID: id, LastResort: true, Key: lr}, nil
	}
	b, ok, err := p.tx.Get(keyKEM(id))
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("e2e: KEM prekey %d used or unknown", id)
	}
	k, err := mlkem.NewDecapsulationKey1024(b)
	if err != nil {
		return nil, wrap("KEM prekey", err)
	}
	return &pqxdh.KEMPreKeyPrivate{ID: id, Key: k}, nil
}
