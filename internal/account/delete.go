package account

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/chatd/chatd/internal/store"
	"github.com/cockroachdb/pebble/v2"
)

// Account deletion happens in two durable steps, so that a crash between
// them is finished at the next start:
//
//  1. BeginDelete checks the password and, in one Sync batch, records
//     the mark 'D' | user -> deleting and deletes every token. From then
//     on the account does not exist for anyone (Exists, Login, Resume,
//     Name), although its records are still on disk.
//  2. The server removes what other packages keep about the user
//     (inbox, groups, presence, lists, ...), then FinishDelete deletes
//     the account record and the name's key, holds the name until
//     Config.NameHold has passed ('N' | name -> release time), and turns
//     the mark into deleted. The mark stays, so that the id is never
//     taken for an account again (ids are never reused anyway).
//
// Both steps may run again after they succeeded: they change nothing more.

// Deletion states, the first byte of a 'D' value (then the time, unix ms).
const (
	stateDeleting = 1
	stateDeleted  = 2
)

// DefaultNameHold is how long a deleted account's name stays taken.
const DefaultNameHold = 30 * 24 * time.Hour

func deletedKey(user uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{store.PrefixDeleted}, user)
}

func heldKey(name []byte) []byte { return append([]byte{store.PrefixNameHeld}, name...) }

func deletedValue(state byte) []byte {
	return binary.BigEndian.AppendUint64([]byte{state}, uint64(time.Now().UnixMilli()))
}

// loadDeleted reads the deletion marks into memory; New calls it.
func (s *Store) loadDeleted() (deleting []uint64, err error) {
	lo := []byte{store.PrefixDeleted}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: store.PrefixEnd(lo)})
	if err != nil {
		return nil, fmt.Errorf("account: read deletions: %w", err)
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		k, v := it.Key(), it.Value()
		if len(k) != 9 || len(v) < 1 {
			continue
		}
		user := binary.BigEndian.Uint64(k[1:])
		s.gone.Store(user, struct{}{})
		s.ngone.Add(1)
		if v[0] == stateDeleting {
			deleting = append(deleting, user)
		}
	}
	return deleting, it.Error()
}

// Deleted reports whether user's account was deleted, or its deletion
// started. One atomic load while no account ever was.
func (s *Store) Deleted(user uint64) bool {
	if s.ngone.Load() == 0 {
		return false
	}
	_, ok := s.gone.Load(user)
	return ok
}

// Deleting returns the users whose deletion started but did not finish
// when the store opened: the server finishes them.
func (s *Store) Deleting() []uint64 { return append([]uint64(nil), s.unfinished...) }

// BeginDelete checks user's password and records that the account is
// being deleted, revoking every token, in one durable write. Run again
// for an account being deleted, it succeeds without checking anything:
// the first call checked.
func (s *Store) BeginDelete(user uint64, password []byte) error {
	if s.Deleted(user) {
		return nil
	}
	rec, err := s.record(user)
	if err != nil {
		return err
	}
	if err := s.verify(rec, password); err != nil {
		return err
	}
	b := s.db.NewBatch()
	defer b.Close()
	b.Set(deletedKey(user), deletedValue(stateDeleting), nil)
	if err := s.deleteTokens(b, user); err != nil {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("account: begin deleting %d: %w", user, err)
	}
	if _, loaded := s.gone.LoadOrStore(user, struct{}{}); !loaded {
		s.ngone.Add(1)
	}
	return nil
}

// FinishDelete deletes the account record, its name's key and any token
// a racing login issued, holds the name for Config.NameHold, and marks
// the deletion done, in one durable write. It is a no-op for an account
// whose deletion finished, and refuses one whose deletion never started.
func (s *Store) FinishDelete(user uint64) error {
	state, found, err := s.deletionState(user)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("account: finish deleting %d: deletion never started", user)
	}
	if state == stateDeleted {
		return nil
	}
	rec, err := s.record(user)
	if err != nil && !errors.Is(err, ErrUnknownUser) {
		return err
	}
	s.mu.Lock() // against a REGISTER of the name in between
	defer s.mu.Unlock()
	b := s.db.NewBatch()
	defer b.Close()
	if rec != nil {
		name := recordName(rec)
		if owner, err := s.lookup(name); err == nil && owner == user {
			b.Delete(nameKey(name), nil)
		}
		b.Set(heldKey(name), binary.BigEndian.AppendUint64(nil, uint64(time.Now().Add(s.cfg.NameHold).UnixMilli())), nil)
		b.Delete(userKey(user), nil)
	}
	if err := s.deleteTokens(b, user); err != nil {
		return err
	}
	b.Set(deletedKey(user), deletedValue(stateDeleted), nil)
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("account: finish deleting %d: %w", user, err)
	}
	return nil
}

// deletionState reads user's deletion mark.
func (s *Store) deletionState(user uint64) (state byte, found bool, err error) {
	v, closer, err := s.db.Get(deletedKey(user))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("account: read deletion of %d: %w", user, err)
	}
	defer closer.Close()
	if len(v) < 1 {
		return 0, false, fmt.Errorf("account: deletion of %d: corrupt mark", user)
	}
	return v[0], true, nil
}

// DeletionDone reports whether user's deletion finished (tests, admin).
func (s *Store) DeletionDone(user uint64) (bool, error) {
	state, found, err := s.deletionState(user)
	return found && state == stateDeleted, err
}

// nameHeld reports whether name belongs to a deleted account whose hold
// has not ended; a hold that ended is deleted in b with the registration.
// s.mu must be held.
func (s *Store) nameHeld(b *pebble.Batch, name []byte) (bool, error) {
	until, found, err := store.GetUint64(s.db, heldKey(name))
	if err != nil {
		return false, fmt.Errorf("account: read name hold: %w", err)
	}
	if !found {
		return false, nil
	}
	if uint64(time.Now().UnixMilli()) < until {
		return true, nil
	}
	b.Delete(heldKey(name), nil)
	return false, nil
}
