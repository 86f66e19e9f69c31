// Package prekey is chatd's directory of end-to-end prekeys, modelled on
// Signal-Server's key directory: each (user, device) uploads an identity
// key, a signed EC prekey, a signed last-resort ML-KEM-1024 key and
// batches of one-time EC and signed ML-KEM prekeys; a fetch hands each
// one-time key to exactly one requester and falls back to the last-resort
// KEM key when none is left.
//
// The server checks every signature against the identity key on upload,
// as Signal does (clients check again: the server is not trusted). It
// remembers who fetched a user's keys, so that a new identity key can be
// announced to them (IDENTITY_CHANGED), and keeps such notices for users
// who are offline until they next log in.
//
// Every change is one Pebble batch written with Sync, under a lock per
// user: a one-time key is deleted in the same synced batch that hands it
// out, so no crash and no concurrent fetch can hand it out twice.
package prekey

import (
	"bytes"
	"crypto/mlkem"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/e2e/xeddsa"
	"github.com/chatd/chatd/internal/store"
	"github.com/cockroachdb/pebble/v2"
)

// Errors, which the server maps to ERROR codes 80-85. Each is wrapped
// with a detail that says what was wrong.
var (
	ErrBadSignature = errors.New("prekey: bad signature")
	ErrInvalid      = errors.New("prekey: invalid keys")
	ErrFull         = errors.New("prekey: too many one-time prekeys")
	ErrNoKeys       = errors.New("prekey: no keys")
)

// Config tunes the store. A zero field means its default.
type Config struct {
	// MaxEC and MaxKEM bound the one-time prekeys stored per device.
	// Defaults 1000 and 100 (Signal takes at most 100 per upload).
	MaxEC, MaxKEM int
	// LowEC and LowKEM are the thresholds below which a fetch reports the
	// device low (the server pushes KEYS_LOW). Defaults 10 and 3.
	LowEC, LowKEM int
	// MaxFetchers bounds the fetchers remembered per user for identity
	// change notices; past it the least recent is forgotten. Default 1000.
	MaxFetchers int
}

func (c *Config) setDefaults() {
	if c.MaxEC == 0 {
		c.MaxEC = 1000
	}
	if c.MaxKEM == 0 {
		c.MaxKEM = 100
	}
	if c.LowEC == 0 {
		c.LowEC = 10
	}
	if c.LowKEM == 0 {
		c.LowKEM = 3
	}
	if c.MaxFetchers == 0 {
		c.MaxFetchers = 1000
	}
}

// Store is the prekey directory on one node's database.
type Store struct {
	db    *pebble.DB
	cfg   Config
	seed  maphash.Seed
	locks [256]sync.Mutex // by user: every read-modify-write of a user's keys
}

// New returns the directory kept in db.
func New(db *pebble.DB, cfg Config) (*Store, error) {
	cfg.setDefaults()
	if cfg.MaxEC < 0 || cfg.MaxKEM < 0 || cfg.LowEC < 0 || cfg.LowKEM < 0 || cfg.MaxFetchers < 0 {
		return nil, fmt.Errorf("prekey: negative setting in %+v", cfg)
	}
	if cfg.MaxEC > 0xFFFF || cfg.MaxKEM > 0xFFFF {
		return nil, fmt.Errorf("prekey: MaxEC %d and MaxKEM %d must fit KEYS_COUNTS' u16", cfg.MaxEC, cfg.MaxKEM)
	}
	return &Store{db: db, cfg: cfg, seed: maphash.MakeSeed()}, nil
}

func (s *Store) lock(user uint64) *sync.Mutex {
	return &s.locks[maphash.Comparable(s.seed, user)%uint64(len(s.locks))]
}

// Low reports whether c is below either threshold.
func (s *Store) Low(c Counts) bool { return c.EC < s.cfg.LowEC || c.KEM < s.cfg.LowKEM }

// Uploaded is the outcome of an upload.
type Uploaded struct {
	Counts Counts
	// Changed is true when the device had keys under another identity
	// key: its sessions are void and its fetchers should be told.
	Changed bool
}

// Upload stores up's keys for (user, dev). The first upload, and any
// with a new identity key, must carry the signed prekey and the
// last-resort key; a new identity drops the device's one-time keys, which
// belonged to the old one. One-time keys are added (an id already stored
// is overwritten), after the stored ones are dropped where up's flags say
// so. Nothing is written unless everything checks.
func (s *Store) Upload(user uint64, dev uint16, up *codec.KeysUpload) (Uploaded, error) {
	if err := s.check(up); err != nil {
		return Uploaded{}, err
	}
	mu := s.lock(user)
	mu.Lock()
	defer mu.Unlock()

	old, had, err := s.record(user, dev)
	if err != nil {
		return Uploaded{}, err
	}
	changed := had && old.Identity != up.Identity
	if (!had || changed) && (up.Signed == nil || up.LastResort == nil) {
		what := "the first upload"
		if changed {
			what = "an upload with a new identity key"
		}
		return Uploaded{}, fmt.Errorf("%w: %s must carry the signed prekey and the last-resort key", ErrInvalid, what)
	}
	rec := old
	rec.Identity = up.Identity
	if up.Signed != nil {
		rec.Signed = *up.Signed
	}
	if up.LastResort != nil {
		rec.LastResort = codec.KEMPreKey{ID: up.LastResort.ID, Key: append([]byte(nil), up.LastResort.Key...), Sig: up.LastResort.Sig}
	}

	b := s.db.NewBatch()
	defer b.Close()
	counts, err := s.counts(user, dev)
	if err != nil {
		return Uploaded{}, err
	}
	if changed || up.Flags&codec.UploadReplaceEC != 0 {
		ecPrefix := devKey(user, dev, tabEC)
		b.DeleteRange(ecPrefix, store.PrefixEnd(ecPrefix), nil)
		counts.EC = 0
	}
	if changed || up.Flags&codec.UploadReplaceKEM != 0 {
		kemPrefix := devKey(user, dev, tabKEM)
		b.DeleteRange(kemPrefix, store.PrefixEnd(kemPrefix), nil)
		counts.KEM = 0
	}
	// A key already stored is overwritten, not counted again: a client
	// that resends an upload whose answer it lost gets the same state.
	// When the batch drops the table first, nothing stored counts.
	dropEC := changed || up.Flags&codec.UploadReplaceEC != 0
	for _, k := range up.EC {
		key := idKey(user, dev, tabEC, k.ID)
		if err := s.countNew(key, dropEC, &counts.EC); err != nil {
			return Uploaded{}, err
		}
		b.Set(key, k.Key[:], nil)
	}
	dropKEM := changed || up.Flags&codec.UploadReplaceKEM != 0
	for _, k := range up.KEM {
		key := idKey(user, dev, tabKEM, k.ID)
		if err := s.countNew(key, dropKEM, &counts.KEM); err != nil {
			return Uploaded{}, err
		}
		b.Set(key, append(append(make([]byte, 0, codec.KEMKeyLen+codec.SigLen), k.Key...), k.Sig[:]...), nil)
	}
	if counts.EC > s.cfg.MaxEC || counts.KEM > s.cfg.MaxKEM {
		return Uploaded{}, fmt.Errorf("%w: the device would hold %d EC and %d KEM one-time prekeys; this server keeps at most %d and %d",
			ErrFull, counts.EC, counts.KEM, s.cfg.MaxEC, s.cfg.MaxKEM)
	}
	b.Set(devKey(user, dev, tabRecord), rec.encode(), nil)
	b.Set(devKey(user, dev, tabCounts), counts.encode(), nil)
	if err := b.Commit(pebble.Sync); err != nil {
		return Uploaded{}, fmt.Errorf("prekey: upload for %d/%d: %w", user, dev, err)
	}
	return Uploaded{Counts: counts, Changed: changed}, nil
}

// check validates an upload without the store: ids, repeats, key forms
// and every signature against the upload's identity key.
func (s *Store) check(up *codec.KeysUpload) error {
	if !up.Flags.Valid() {
		return fmt.Errorf("%w: unknown flag bits 0x%02x", ErrInvalid, uint8(up.Flags))
	}
	// X25519 keys must be canonical and not of small order: a DH with a
	// small-order key gives a secret an attacker knows.
	if !xeddsa.ValidPublicKey(up.Identity[:]) {
		return fmt.Errorf("%w: the identity key is not a usable X25519 key", ErrInvalid)
	}
	if up.Signed != nil {
		if up.Signed.ID == 0 || !xeddsa.ValidPublicKey(up.Signed.Key[:]) {
			return fmt.Errorf("%w: signed prekey %d: id 0 or not a usable X25519 key", ErrInvalid, up.Signed.ID)
		}
		if !xeddsa.Verify(up.Identity[:], codec.SignedMessage(codec.AlgX25519, up.Signed.Key[:]), up.Signed.Sig[:]) {
			return fmt.Errorf("%w: signed prekey %d", ErrBadSignature, up.Signed.ID)
		}
	}
	if up.LastResort != nil {
		if err := s.checkKEM(&up.Identity, up.LastResort, "last-resort key"); err != nil {
			return err
		}
	}
	seen := make(map[uint32]bool, len(up.EC))
	for i := range up.EC {
		id := up.EC[i].ID
		if id == 0 || seen[id] {
			return fmt.Errorf("%w: EC prekey id %d is 0 or repeated", ErrInvalid, id)
		}
		if !xeddsa.ValidPublicKey(up.EC[i].Key[:]) {
			return fmt.Errorf("%w: EC prekey %d is not a usable X25519 key", ErrInvalid, id)
		}
		seen[id] = true
	}
	clear(seen)
	for i := range up.KEM {
		k := &up.KEM[i]
		if seen[k.ID] {
			return fmt.Errorf("%w: KEM prekey id %d repeated", ErrInvalid, k.ID)
		}
		seen[k.ID] = true
		if err := s.checkKEM(&up.Identity, k, "KEM prekey"); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) checkKEM(identity *codec.ECKey, k *codec.KEMPreKey, what string) error {
	if k.ID == 0 {
		return fmt.Errorf("%w: %s id 0", ErrInvalid, what)
	}
	// The encapsulation key must parse (FIPS 203's modulus check), so a
	// fetcher is never handed bytes it cannot encapsulate to.
	if _, err := mlkem.NewEncapsulationKey1024(k.Key); err != nil {
		return fmt.Errorf("%w: %s %d is not an ML-KEM-1024 key", ErrInvalid, what, k.ID)
	}
	if !xeddsa.Verify(identity[:], codec.SignedMessage(codec.AlgMLKEM1024, k.Key), k.Sig[:]) {
		return fmt.Errorf("%w: %s %d", ErrBadSignature, what, k.ID)
	}
	return nil
}

// Count returns how many one-time prekeys (user, dev) has left; ErrNoKeys
// when it never uploaded.
func (s *Store) Count(user uint64, dev uint16) (Counts, error) {
	if _, ok, err := s.record(user, dev); err != nil {
		return Counts{}, err
	} else if !ok {
		return Counts{}, fmt.Errorf("%w: device %d has uploaded none", ErrNoKeys, dev)
	}
	return s.counts(user, dev)
}

// Check reports whether digest (codec.KeysDigest) matches the long-lived
// keys stored for (user, dev); false when there are none.
func (s *Store) Check(user uint64, dev uint16, digest codec.Digest) (bool, error) {
	rec, ok, err := s.record(user, dev)
	if err != nil || !ok {
		return false, err
	}
	return codec.KeysDigest(&rec.Identity, &rec.Signed, &rec.LastResort) == digest, nil
}

// Delete removes everything the directory holds for user: every device's
// keys, its fetchers and its pending notices (account deletion). Other
// users' records naming user stay until they age out: a notice about a
// deleted user is harmless.
func (s *Store) Delete(user uint64) error {
	mu := s.lock(user)
	mu.Lock()
	defer mu.Unlock()
	p := userPrefix(user)
	b := s.db.NewBatch()
	defer b.Close()
	b.DeleteRange(p, store.PrefixEnd(p), nil)
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("prekey: delete %d: %w", user, err)
	}
	return nil
}

func (s *Store) record(user uint64, dev uint16) (record, bool, error) {
	v, closer, err := s.db.Get(devKey(user, dev, tabRecord))
	if errors.Is(err, pebble.ErrNotFound) {
		return record{}, false, nil
	}
	if err != nil {
		return record{}, false, fmt.Errorf("prekey: read %d/%d: %w", user, dev, err)
	}
	defer closer.Close()
	rec, ok := decodeRecord(v)
	if !ok {
		return record{}, false, fmt.Errorf("prekey: %d/%d: stored record of %d bytes", user, dev, len(v))
	}
	return rec, true, nil
}

func (s *Store) counts(user uint64, dev uint16) (Counts, error) {
	v, closer, err := s.db.Get(devKey(user, dev, tabCounts))
	if errors.Is(err, pebble.ErrNotFound) {
		return Counts{}, nil
	}
	if err != nil {
		return Counts{}, fmt.Errorf("prekey: read counts %d/%d: %w", user, dev, err)
	}
	defer closer.Close()
	return decodeCounts(v), nil
}

// countNew adds one to *n unless key is stored and not being dropped.
func (s *Store) countNew(key []byte, dropped bool, n *int) error {
	if !dropped {
		if ok, err := s.has(key); err != nil || ok {
			return err
		}
	}
	*n++
	return nil
}

func (s *Store) has(key []byte) (bool, error) {
	_, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("prekey: read: %w", err)
	}
	closer.Close()
	return true, nil
}

// first returns the first key and value under prefix, copied.
func first(r pebble.Reader, prefix []byte) (key, value []byte, err error) {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: store.PrefixEnd(prefix)})
	if err != nil {
		return nil, nil, err
	}
	if it.First() {
		key, value = bytes.Clone(it.Key()), bytes.Clone(it.Value())
	}
	return key, value, errors.Join(it.Error(), it.Close())
}
