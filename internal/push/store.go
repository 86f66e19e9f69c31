package push

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/chatd/chatd/internal/store"
	"github.com/cockroachdb/pebble/v2"
)

// Key layout (store's package comment lists every table):
//
//	PrefixSub | user u64 | device u32 -> created u64 | p256dh (65) | auth (16) | endpoint
//	PrefixDue | user u64              -> count u32 | urgency u8
const (
	PrefixSub = store.PrefixPushSub // Web Push subscriptions
	PrefixDue = store.PrefixPushDue // pushes due but not yet done
)

// ErrUnknownDevice is Remove for a device with no subscription.
var ErrUnknownDevice = errors.New("push: no subscription for that device")

// MaxPerUser bounds one user's subscriptions (devices).
const MaxPerUser = 8

// Subscription is one device's Web Push subscription.
type Subscription struct {
	Device   uint32
	Created  uint64 // unix milliseconds
	Endpoint string
	P256dh   []byte // the user agent's P-256 public key, uncompressed
	Auth     []byte // its 16-byte authentication secret
}

// Store keeps subscriptions in Pebble and remembers in memory which users
// have any, so that Due costs a map lookup for the others.
type Store struct {
	db *pebble.DB

	// wmu serializes writers (each a synced write); mu guards only the
	// map, so that Has, on the inbox lane, never waits for a disk.
	wmu        sync.Mutex
	mu         sync.RWMutex
	subscribed map[uint64]int // user -> subscriptions
}

// OpenStore loads which users have subscriptions.
func OpenStore(db *pebble.DB) (*Store, error) {
	s := &Store{db: db, subscribed: map[uint64]int{}}
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{PrefixSub}, UpperBound: []byte{PrefixSub + 1}})
	if err != nil {
		return nil, fmt.Errorf("push: load subscriptions: %w", err)
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		if k := it.Key(); len(k) == 13 {
			s.subscribed[binary.BigEndian.Uint64(k[1:])]++
		}
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("push: load subscriptions: %w", err)
	}
	return s, nil
}

func subKey(user uint64, device uint32) []byte {
	k := binary.BigEndian.AppendUint64([]byte{PrefixSub}, user)
	return binary.BigEndian.AppendUint32(k, device)
}

func userPrefix(p byte, user uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{p}, user)
}

func encodeSub(s *Subscription) []byte {
	v := binary.BigEndian.AppendUint64(nil, s.Created)
	v = append(v, s.P256dh...)
	v = append(v, s.Auth...)
	return append(v, s.Endpoint...)
}

func decodeSub(k, v []byte) (Subscription, error) {
	if len(k) != 13 || len(v) < 8+65+16 {
		return Subscription{}, fmt.Errorf("push: corrupt subscription record (%d, %d bytes)", len(k), len(v))
	}
	return Subscription{
		Device:   binary.BigEndian.Uint32(k[9:]),
		Created:  binary.BigEndian.Uint64(v),
		P256dh:   append([]byte(nil), v[8:73]...),
		Auth:     append([]byte(nil), v[73:89]...),
		Endpoint: string(v[89:]),
	}, nil
}

// Has reports whether user has any subscription.
func (s *Store) Has(user uint64) bool {
	s.mu.RLock()
	n := s.subscribed[user]
	s.mu.RUnlock()
	return n > 0
}

// Users is how many users have a subscription.
func (s *Store) Users() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.subscribed)
}

// Put stores (or replaces) the subscription of sub.Device, durably.
func (s *Store) Put(user uint64, sub Subscription) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	k := subKey(user, sub.Device)
	_, closer, err := s.db.Get(k)
	switch {
	case err == nil:
		closer.Close()
		return s.set(k, sub, 0)
	case errors.Is(err, pebble.ErrNotFound):
		s.mu.RLock()
		n := s.subscribed[user]
		s.mu.RUnlock()
		if n >= MaxPerUser {
			return fmt.Errorf("push: user %d has %d subscriptions already", user, MaxPerUser)
		}
		return s.set(k, sub, 1)
	default:
		return fmt.Errorf("push: read subscription: %w", err)
	}
}

func (s *Store) set(k []byte, sub Subscription, added int) error {
	if err := s.db.Set(k, encodeSub(&sub), pebble.Sync); err != nil {
		return fmt.Errorf("push: store subscription: %w", err)
	}
	s.mu.Lock()
	s.subscribed[binary.BigEndian.Uint64(k[1:])] += added
	s.mu.Unlock()
	return nil
}

// List returns user's subscriptions, by device.
func (s *Store) List(user uint64) ([]Subscription, error) {
	p := userPrefix(PrefixSub, user)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: userPrefix(PrefixSub, user+1)})
	if err != nil {
		return nil, fmt.Errorf("push: list subscriptions: %w", err)
	}
	defer it.Close()
	var subs []Subscription
	for it.First(); it.Valid(); it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, fmt.Errorf("push: list subscriptions: %w", err)
		}
		sub, err := decodeSub(it.Key(), v)
		if err != nil {
			return nil, err
		}
		subs = append(subs, sub)
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("push: list subscriptions: %w", err)
	}
	return subs, nil
}

// Remove deletes the subscription of one device: ErrUnknownDevice if
// there is none.
func (s *Store) Remove(user uint64, device uint32) error {
	_, err := s.removeIf(user, device, func(Subscription) bool { return true })
	return err
}

// removeIf deletes the device's subscription if match says so of the
// stored one: a push service's 410 drops the endpoint it answered for,
// not a newer one the device registered meanwhile.
func (s *Store) removeIf(user uint64, device uint32, match func(Subscription) bool) (bool, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	k := subKey(user, device)
	v, closer, err := s.db.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, ErrUnknownDevice
	}
	if err != nil {
		return false, fmt.Errorf("push: read subscription: %w", err)
	}
	sub, err := decodeSub(k, v)
	closer.Close()
	if err != nil {
		return false, err
	}
	if !match(sub) {
		return false, nil
	}
	if err := s.db.Delete(k, pebble.Sync); err != nil {
		return false, fmt.Errorf("push: delete subscription: %w", err)
	}
	s.forget(user, 1)
	return true, nil
}

func (s *Store) forget(user uint64, n int) {
	s.mu.Lock()
	if s.subscribed[user] -= n; s.subscribed[user] <= 0 {
		delete(s.subscribed, user)
	}
	s.mu.Unlock()
}

// DeleteUser deletes every subscription of user and any push due to
// them: LOGOUT, PASSWORD and account deletion call it.
func (s *Store) DeleteUser(user uint64) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.DeleteRange(userPrefix(PrefixSub, user), userPrefix(PrefixSub, user+1), nil); err != nil {
		return fmt.Errorf("push: delete subscriptions: %w", err)
	}
	if err := b.Delete(userPrefix(PrefixDue, user), nil); err != nil {
		return fmt.Errorf("push: delete due push: %w", err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("push: delete subscriptions: %w", err)
	}
	s.mu.Lock()
	delete(s.subscribed, user)
	s.mu.Unlock()
	return nil
}

// The due-set: see the package comment. Written without sync.

func (s *Store) markDue(users []uint64, pend map[uint64]dueState) error {
	b := s.db.NewBatch()
	defer b.Close()
	for _, u := range users {
		d := pend[u]
		v := binary.BigEndian.AppendUint32(nil, d.count)
		if err := b.Set(userPrefix(PrefixDue, u), append(v, byte(d.urgency)), nil); err != nil {
			return err
		}
	}
	return b.Commit(pebble.NoSync)
}

func (s *Store) clearDue(user uint64) error {
	return s.db.Delete(userPrefix(PrefixDue, user), pebble.NoSync)
}

// dueState is one user's open coalescing window, or a due push loaded
// from the due-set.
type dueState struct {
	count   uint32
	urgency Urgency
}

// decodeDue reads a due-set value: count (4) | urgency (1).
func decodeDue(v []byte) (dueState, bool) {
	if len(v) != 5 {
		return dueState{}, false
	}
	return dueState{count: binary.BigEndian.Uint32(v), urgency: Urgency(v[4])}, true
}

// loadDue returns the due-set.
func (s *Store) loadDue() (map[uint64]dueState, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{PrefixDue}, UpperBound: []byte{PrefixDue + 1}})
	if err != nil {
		return nil, fmt.Errorf("push: load due pushes: %w", err)
	}
	defer it.Close()
	due := map[uint64]dueState{}
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		if d, ok := decodeDue(it.Value()); ok && len(k) == 9 {
			due[binary.BigEndian.Uint64(k[1:])] = d
		}
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("push: load due pushes: %w", err)
	}
	return due, nil
}
