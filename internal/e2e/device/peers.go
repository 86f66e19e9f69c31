package device

import "fmt"

// Peer is what this device knows of a contact's identity key.
type Peer struct {
	// Known is false until the first bundle or message from the contact.
	Known bool
	// Key is the pinned identity key: the first one seen (trust on first
	// use), or the one last accepted.
	Key [32]byte
	// Changed is set when the contact's identity key differs from Key:
	// New holds it, and nothing is sealed to them until AcceptIdentity.
	Changed bool
	New     [32]byte
}

const flagChanged = 2

func loadPeer(tx Tx, user uint64) (Peer, error) {
	var p Peer
	b, ok, err := tx.Get(keyPeer(user))
	if err != nil || !ok {
		return p, err
	}
	if len(b) != 33 && len(b) != 65 {
		return p, fmt.Errorf("e2e: peer %d: record of %d bytes", user, len(b))
	}
	p.Known = true
	copy(p.Key[:], b)
	if b[32]&flagChanged != 0 && len(b) == 65 {
		p.Changed = true
		copy(p.New[:], b[33:])
	}
	return p, nil
}

func storePeer(tx Tx, user uint64, p Peer) error {
	b := append(append([]byte(nil), p.Key[:]...), 0)
	if p.Changed {
		b[32] |= flagChanged
		b = append(b, p.New[:]...)
	}
	return tx.Put(keyPeer(user), b)
}

// see records that user's device presented identity key k and reports
// whether it is not the pinned one. The first key seen is pinned; a
// different one is kept as Changed until AcceptIdentity.
func see(tx Tx, user uint64, k [32]byte) (changed bool, err error) {
	p, err := loadPeer(tx, user)
	if err != nil {
		return false, err
	}
	switch {
	case !p.Known:
		return false, storePeer(tx, user, Peer{Known: true, Key: k})
	case p.Key == k:
		if p.Changed { // back to the pinned key: the change is moot
			p.Changed = false
			return false, storePeer(tx, user, p)
		}
		return false, nil
	case p.Changed && p.New == k:
		return true, nil
	}
	p.Changed, p.New = true, k
	return true, storePeer(tx, user, p)
}

// Peer returns what is known of user's identity key.
func (d *Device) Peer(tx Tx, user uint64) (Peer, error) { return loadPeer(tx, user) }

// AcceptIdentity pins user's new identity key after a change, so that
// messages to them are sealed again. It reports false if nothing
// changed.
func (d *Device) AcceptIdentity(tx Tx, user uint64) (bool, error) {
	p, err := loadPeer(tx, user)
	if err != nil || !p.Changed {
		return false, err
	}
	return true, storePeer(tx, user, Peer{Known: true, Key: p.New})
}

// IdentityChanged handles the server's IDENTITY_CHANGED notice: the
// sessions with user belong to a key they no longer have, so they are
// dropped and the next message fetches a new bundle (whose identity key
// then shows as changed). A key change already seen in a message is kept.
func (d *Device) IdentityChanged(tx Tx, user uint64) error {
	p, err := loadPeer(tx, user)
	if err != nil || p.Changed {
		return err
	}
	return tx.Delete(keySession(user))
}
