package device

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"

	"github.com/chatd/chatd/internal/e2e/envelope"
	"github.com/chatd/chatd/internal/e2e/senderkey"
	"github.com/chatd/chatd/internal/e2e/session"
)

// A sender key's distribution ID is the group id (u64) followed by 8
// random bytes: a receiver learns from a distribution which group it is
// for, and a member who leaves and rejoins starts a new ID.
func groupOf(id [senderkey.DistributionIDSize]byte) uint64 {
	return binary.BigEndian.Uint64(id[:8])
}

// sender returns this device's chain for group, making one if needed.
func sender(tx Tx, group uint64) (*senderkey.Sender, error) {
	b, ok, err := tx.Get(keySender(group))
	if err != nil {
		return nil, err
	}
	if ok {
		return senderkey.UnmarshalSender(b)
	}
	var id [senderkey.DistributionIDSize]byte
	binary.BigEndian.PutUint64(id[:8], group)
	rand.Read(id[8:])
	s, err := senderkey.NewSender(id)
	if err != nil {
		return nil, err
	}
	return s, tx.Put(keySender(group), s.Marshal())
}

// NeedKey returns the members (of those given) who do not hold this
// device's current sender key for group: seal Distribution to each, then
// MarkHolds.
func (d *Device) NeedKey(tx Tx, group uint64, members []uint64) ([]uint64, error) {
	var out []uint64
	for _, m := range members {
		_, ok, err := tx.Get(keyHolds(group, m))
		if err != nil {
			return nil, err
		}
		if !ok {
			out = append(out, m)
		}
	}
	return out, nil
}

// Distribution returns this device's current sender key for group as
// Content for a 1:1 Seal.
func (d *Device) Distribution(tx Tx, group uint64) (*envelope.Content, error) {
	s, err := sender(tx, group)
	if err != nil {
		return nil, err
	}
	return session.Distribution(s), nil
}

// MarkHolds records that member was sent the current sender key.
func (d *Device) MarkHolds(tx Tx, group, member uint64) error {
	return tx.Put(keyHolds(group, member), []byte{1})
}

// UnmarkHolds records that member did not get the current sender key
// after all (the server refused it for good): NeedKey lists them again,
// so the next group message carries another distribution.
func (d *Device) UnmarkHolds(tx Tx, group, member uint64) error {
	return tx.Delete(keyHolds(group, member))
}

// SealGroup encrypts c once for every member holding this device's
// sender key for group.
func (d *Device) SealGroup(tx Tx, group uint64, c *envelope.Content) ([]byte, error) {
	s, err := sender(tx, group)
	if err != nil {
		return nil, err
	}
	body, err := session.SealGroup(s, c)
	if err != nil {
		return nil, wrap(fmt.Sprintf("seal for group %d", group), err)
	}
	return body, tx.Put(keySender(group), s.Marshal())
}

// OpenGroup decrypts a group message from member with the sender key
// they distributed. A failure changes nothing.
func (d *Device) OpenGroup(tx Tx, group, member uint64, body []byte) ([]byte, error) {
	b, ok, err := tx.Get(keyRecv(group, member))
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrNoSenderKey
	}
	r, err := senderkey.UnmarshalReceiver(b)
	if err != nil {
		return nil, err
	}
	c, err := session.OpenGroup(r, body)
	if err != nil {
		return nil, wrap(fmt.Sprintf("open group %d message from %d", group, member), err)
	}
	return c.Body, tx.Put(keyRecv(group, member), r.Marshal())
}

// receive stores a sender key member distributed for group.
func (d *Device) receive(tx Tx, group, member uint64, dist *senderkey.Distribution) error {
	b, ok, err := tx.Get(keyRecv(group, member))
	if err != nil {
		return err
	}
	var r *senderkey.Receiver
	if ok {
		if r, err = senderkey.UnmarshalReceiver(b); err != nil {
			return err
		}
		if err := r.Process(dist); err != nil {
			// A new distribution ID: the member started over (left
			// and came back); their old chains are of no more use.
			r = nil
		}
	}
	if r == nil {
		r = senderkey.NewReceiver(dist, senderkey.Config{})
	}
	return tx.Put(keyRecv(group, member), r.Marshal())
}

// MembersRemoved rotates this device's sender key for group (so that the
// removed members cannot read what follows; the new key goes to the
// remaining members with the next message) and forgets the removed
// members' keys.
func (d *Device) MembersRemoved(tx Tx, group uint64, removed []uint64) error {
	b, ok, err := tx.Get(keySender(group))
	if err != nil {
		return err
	}
	if ok {
		s, err := senderkey.UnmarshalSender(b)
		if err != nil {
			return err
		}
		if err := s.Rotate(); err != nil {
			return err
		}
		if err := tx.Put(keySender(group), s.Marshal()); err != nil {
			return err
		}
	}
	if err := deletePrefix(tx, prefixHolds(group)); err != nil {
		return err
	}
	for _, u := range removed {
		if err := tx.Delete(keyRecv(group, u)); err != nil {
			return err
		}
	}
	return nil
}

// LeftGroup forgets everything about group (this user left or was
// removed).
func (d *Device) LeftGroup(tx Tx, group uint64) error {
	if err := tx.Delete(keySender(group)); err != nil {
		return err
	}
	if err := deletePrefix(tx, prefixHolds(group)); err != nil {
		return err
	}
	return deletePrefix(tx, prefixRecv(group))
}

func deletePrefix(tx Tx, prefix string) error {
	keys, err := tx.Keys(prefix)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := tx.Delete(k); err != nil {
			return err
		}
	}
	return nil
}
