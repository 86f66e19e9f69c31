package prekey

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/store"
	"github.com/cockroachdb/pebble/v2"
)

// Fetchers returns the users who fetched user's keys (at most
// MaxFetchers, the most recent): those who may hold a session with one of
// its devices.
func (s *Store) Fetchers(user uint64) ([]uint64, error) {
	p := devKey(user, 0, tabFetcher)
	var out []uint64
	err := s.scan(p, func(k, _ []byte) { out = append(out, binary.BigEndian.Uint64(k[len(p):])) })
	if err != nil {
		return nil, fmt.Errorf("prekey: fetchers of %d: %w", user, err)
	}
	return out, nil
}

// AddNotices records, for each of users, that changed's device dev has a
// new identity key, in one synced batch. The notices wait until
// TakeNotices hands them to a session.
func (s *Store) AddNotices(users []uint64, changed uint64, dev uint16) error {
	if len(users) == 0 {
		return nil
	}
	b := s.db.NewBatch()
	defer b.Close()
	for _, u := range users {
		b.Set(noticeKey(u, changed, dev), nil, nil)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("prekey: identity notices about %d/%d: %w", changed, dev, err)
	}
	return nil
}

// Notices returns user's pending identity notices.
func (s *Store) Notices(user uint64) ([]codec.IdentityChanged, error) {
	p := devKey(user, 0, tabNotice)
	var out []codec.IdentityChanged
	err := s.scan(p, func(k, _ []byte) {
		k = k[len(p):]
		out = append(out, codec.IdentityChanged{User: binary.BigEndian.Uint64(k), Device: binary.BigEndian.Uint16(k[8:])})
	})
	if err != nil {
		return nil, fmt.Errorf("prekey: notices for %d: %w", user, err)
	}
	return out, nil
}

// DropNotices deletes notices of user's once they were written to its
// session. Not synced: if a crash loses the deletion, the notice is sent
// again, which a client takes as it takes the first.
func (s *Store) DropNotices(user uint64, ns []codec.IdentityChanged) error {
	if len(ns) == 0 {
		return nil
	}
	b := s.db.NewBatch()
	defer b.Close()
	for _, n := range ns {
		b.Delete(noticeKey(user, n.User, n.Device), nil)
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("prekey: drop notices for %d: %w", user, err)
	}
	return nil
}

func (s *Store) scan(p []byte, fn func(k, v []byte)) error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: store.PrefixEnd(p)})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		fn(it.Key(), it.Value())
	}
	return errors.Join(it.Error(), it.Close())
}
