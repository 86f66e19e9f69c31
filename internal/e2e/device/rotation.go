package device

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/binary"
	"strconv"
	"strings"
	"time"
)

// Signed prekey rotation. The signed prekey is in every bundle the
// directory hands out, so a key that never changes would let whoever
// steals it later read the start of every session made with it (before
// the first DH ratchet step). Publish replaces it once it is older than
// Config.SignedPreKeyPeriod. The old private key stays, retired, for
// Config.SignedPreKeyGrace, so initiations made from a bundle fetched
// before the change still open; then it is deleted.
//
//	e2e/self/signed-at   u64 unix seconds the current signed prekey was made
//	e2e/oldspk/ID        u64 unix seconds it was retired | [32] private key
const keySignedAt = "e2e/self/signed-at"

const prefixOldSigned = "e2e/oldspk/"

func keyOldSigned(id uint32) string { return prefixOldSigned + num(uint64(id)) }

// rotateSignedIfDue replaces a signed prekey older than the period and
// deletes retired ones past the grace period. It reports whether it
// replaced the key (the caller then uploads the long-lived keys). A store
// from before rotation has no creation time: its key counts as due.
func (d *Device) rotateSignedIfDue(tx Tx) (bool, error) {
	now := d.cfg.Now()
	if err := pruneOldSigned(tx, now.Add(-d.cfg.SignedPreKeyGrace)); err != nil {
		return false, err
	}
	b, ok, err := tx.Get(keySignedAt)
	if err != nil {
		return false, err
	}
	if ok && len(b) == 8 {
		made := time.Unix(int64(binary.BigEndian.Uint64(b)), 0)
		if now.Sub(made) < d.cfg.SignedPreKeyPeriod {
			return false, nil
		}
	}
	old, ok, err := tx.Get(keySigned)
	if err != nil {
		return false, err
	}
	if ok && len(old) == 4+32 {
		retired := binary.BigEndian.AppendUint64(nil, uint64(now.Unix()))
		if err := tx.Put(keyOldSigned(binary.BigEndian.Uint32(old)), append(retired, old[4:]...)); err != nil {
			return false, err
		}
	}
	return true, newSigned(tx, now)
}

// newSigned makes and stores a new signed prekey.
func newSigned(tx Tx, now time.Time) error {
	spk, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return wrap("signed prekey", err)
	}
	id, err := nextID(tx)
	if err != nil {
		return err
	}
	if err := tx.Put(keySigned, append(binary.BigEndian.AppendUint32(nil, id), spk.Bytes()...)); err != nil {
		return err
	}
	return tx.Put(keySignedAt, binary.BigEndian.AppendUint64(nil, uint64(now.Unix())))
}

// pruneOldSigned deletes retired signed prekeys retired before cutoff.
func pruneOldSigned(tx Tx, cutoff time.Time) error {
	keys, err := tx.Keys(prefixOldSigned)
	if err != nil {
		return err
	}
	for _, k := range keys {
		b, ok, err := tx.Get(k)
		if err != nil {
			return err
		}
		if ok && len(b) == 8+32 && !time.Unix(int64(binary.BigEndian.Uint64(b)), 0).Before(cutoff) {
			continue
		}
		if err := tx.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// loadOldSigned finds a retired signed prekey still in its grace period.
func loadOldSigned(tx Tx, id uint32) (*ecdh.PrivateKey, bool, error) {
	b, ok, err := tx.Get(keyOldSigned(id))
	if err != nil || !ok || len(b) != 8+32 {
		return nil, false, err
	}
	k, err := ecdh.X25519().NewPrivateKey(b[8:])
	return k, err == nil, wrap("retired signed prekey", err)
}

// retiredSigned lists the ids of retired signed prekeys kept (tests).
func retiredSigned(tx Tx) ([]uint32, error) {
	keys, err := tx.Keys(prefixOldSigned)
	var ids []uint32
	for _, k := range keys {
		n, err := strconv.ParseUint(strings.TrimPrefix(k, prefixOldSigned), 10, 32)
		if err == nil {
			ids = append(ids, uint32(n))
		}
	}
	return ids, err
}
