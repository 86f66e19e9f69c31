package prekey

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/store"
	"github.com/cockroachdb/pebble/v2"
)

// Fetched is the outcome of a fetch.
type Fetched struct {
	Bundles []codec.Bundle
	// Low lists the devices whose one-time keys this fetch took below a
	// threshold (each crossing reported once), with what they have left.
	Low []LowDevice
	// LastResort counts the bundles that carry the last-resort KEM key:
	// the device had no one-time KEM key left.
	LastResort int
}

// LowDevice is a device that should upload more one-time prekeys.
type LowDevice struct {
	Device uint16
	Counts Counts
}

// Fetch hands requester a bundle for user's device dev, or for each of
// its devices when dev is 0: the long-lived keys, the lowest-id one-time
// EC prekey if one is left and the lowest-id one-time KEM prekey, or the
// last-resort key when none is left. The one-time keys it hands out are
// deleted in the same synced batch, under user's lock, so each goes to
// exactly one fetcher. The requester is remembered as a fetcher of user's
// keys (unless it is user). ErrNoKeys when there is nothing to fetch.
func (s *Store) Fetch(requester, user uint64, dev uint16) (Fetched, error) {
	mu := s.lock(user)
	mu.Lock()
	defer mu.Unlock()
	devs, err := s.devices(user, dev)
	if err != nil {
		return Fetched{}, err
	}
	if len(devs) == 0 {
		if dev == 0 {
			return Fetched{}, fmt.Errorf("%w: user %d has uploaded none", ErrNoKeys, user)
		}
		return Fetched{}, fmt.Errorf("%w: user %d device %d has uploaded none", ErrNoKeys, user, dev)
	}
	b := s.db.NewBatch()
	defer b.Close()
	var out Fetched
	for _, d := range devs {
		bundle, before, after, err := s.take(b, user, d)
		if err != nil {
			return Fetched{}, err
		}
		out.Bundles = append(out.Bundles, bundle)
		if after.KEM == before.KEM {
			out.LastResort++
		}
		if !s.Low(before) && s.Low(after) {
			out.Low = append(out.Low, LowDevice{Device: d, Counts: after})
		}
	}
	if requester != user {
		if err := s.remember(b, user, requester); err != nil {
			return Fetched{}, err
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return Fetched{}, fmt.Errorf("prekey: fetch of %d: %w", user, err)
	}
	return out, nil
}

// devices lists user's devices with keys: just dev when it is not 0.
func (s *Store) devices(user uint64, dev uint16) ([]uint16, error) {
	if dev != 0 {
		if _, ok, err := s.record(user, dev); err != nil || !ok {
			return nil, err
		}
		return []uint16{dev}, nil
	}
	p := userPrefix(user)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: devPrefix(user, 1), UpperBound: devPrefix(user, 0xFFFF)})
	if err != nil {
		return nil, fmt.Errorf("prekey: devices of %d: %w", user, err)
	}
	defer it.Close()
	var devs []uint16
	// One seek a device: each device's record sorts first among its keys.
	for ok := it.First(); ok && len(devs) < codec.MaxBundles; {
		k := it.Key()
		d := binary.BigEndian.Uint16(k[len(p):])
		if len(k) == len(p)+3 && k[len(p)+2] == tabRecord {
			devs = append(devs, d)
		}
		if d == 0xFFFE {
			break
		}
		ok = it.SeekGE(devPrefix(user, d+1))
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("prekey: devices of %d: %w", user, err)
	}
	return devs, nil
}

// take builds dev's bundle and adds the deletion of the one-time keys it
// hands out to b. Reads see the database, not b: one take per device per
// batch.
func (s *Store) take(b *pebble.Batch, user uint64, dev uint16) (bundle codec.Bundle, before, after Counts, err error) {
	rec, ok, err := s.record(user, dev)
	if err != nil || !ok {
		return bundle, before, after, fmt.Errorf("prekey: take %d/%d: record vanished: %w", user, dev, err)
	}
	if before, err = s.counts(user, dev); err != nil {
		return bundle, before, after, err
	}
	after = before
	bundle = codec.Bundle{Device: dev, Identity: rec.Identity, Signed: rec.Signed, KEM: rec.LastResort}
	k, v, err := first(s.db, devKey(user, dev, tabEC))
	if err != nil {
		return bundle, before, after, fmt.Errorf("prekey: take EC prekey of %d/%d: %w", user, dev, err)
	}
	if k != nil {
		bundle.EC = &codec.ECPreKey{ID: binary.BigEndian.Uint32(k[len(k)-4:])}
		copy(bundle.EC.Key[:], v)
		b.Delete(k, nil)
		after.EC = max(after.EC-1, 0)
	}
	k, v, err = first(s.db, devKey(user, dev, tabKEM))
	if err != nil {
		return bundle, before, after, fmt.Errorf("prekey: take KEM prekey of %d/%d: %w", user, dev, err)
	}
	if k != nil && len(v) == codec.KEMKeyLen+codec.SigLen {
		bundle.KEM = codec.KEMPreKey{ID: binary.BigEndian.Uint32(k[len(k)-4:]), Key: v[:codec.KEMKeyLen]}
		copy(bundle.KEM.Sig[:], v[codec.KEMKeyLen:])
		b.Delete(k, nil)
		after.KEM = max(after.KEM-1, 0)
	}
	if after != before {
		b.Set(devKey(user, dev, tabCounts), after.encode(), nil)
	}
	return bundle, before, after, nil
}

// remember records requester as a fetcher of user's keys, forgetting the
// least recent one when user already has MaxFetchers.
func (s *Store) remember(b *pebble.Batch, user, requester uint64) error {
	key := fetcherKey(user, requester)
	known, err := s.has(key)
	if err != nil {
		return err
	}
	if !known {
		if err := s.evictFetcher(b, user); err != nil {
			return err
		}
	}
	b.Set(key, binary.BigEndian.AppendUint64(nil, uint64(time.Now().UnixMilli())), nil)
	return nil
}

// evictFetcher deletes the least recent fetcher of user when there are
// MaxFetchers. It scans them: it runs only for a new fetcher, and fetches
// are rate-limited.
func (s *Store) evictFetcher(b *pebble.Batch, user uint64) error {
	p := devKey(user, 0, tabFetcher)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: store.PrefixEnd(p)})
	if err != nil {
		return fmt.Errorf("prekey: fetchers of %d: %w", user, err)
	}
	n, oldest, oldestAt := 0, []byte(nil), uint64(1<<64-1)
	for it.First(); it.Valid(); it.Next() {
		n++
		if at := binary.BigEndian.Uint64(it.Value()); at < oldestAt {
			oldest, oldestAt = append(oldest[:0], it.Key()...), at
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("prekey: fetchers of %d: %w", user, err)
	}
	if n >= s.cfg.MaxFetchers && oldest != nil {
		b.Delete(oldest, nil)
	}
	return nil
}
