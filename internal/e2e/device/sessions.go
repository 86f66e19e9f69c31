package device

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/e2e/envelope"
	"github.com/chatd/chatd/internal/e2e/internal/wire"
	"github.com/chatd/chatd/internal/e2e/senderkey"
	"github.com/chatd/chatd/internal/e2e/session"
)

// maxSessions is how many sessions are kept per contact. Two devices that
// start sessions with each other at the same time each end up with two
// (the one each started and the one each accepted); whichever decrypts
// moves to the front and is the one sealed with, so both sides settle on
// one. Signal keeps 40 "previous states" for the same reason.
const maxSessions = 4

func loadSessions(tx Tx, user uint64) ([][]byte, error) {
	b, ok, err := tx.Get(keySession(user))
	if err != nil || !ok {
		return nil, err
	}
	r := wire.NewReader(b)
	n := r.U8()
	out := make([][]byte, 0, n)
	for range n {
		out = append(out, r.Bytes32())
	}
	if err := r.Finish(); err != nil {
		return nil, fmt.Errorf("e2e: sessions with %d: %w", user, err)
	}
	return out, nil
}

func storeSessions(tx Tx, user uint64, ss [][]byte) error {
	if len(ss) > maxSessions {
		ss = ss[:maxSessions]
	}
	b := []byte{byte(len(ss))}
	for _, s := range ss {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	return tx.Put(keySession(user), b)
}

// Ready reports whether a message to user can be sealed now: nil, or
// ErrNoSession (StartSession first) or ErrUnaccepted.
func (d *Device) Ready(tx Tx, user uint64) error {
	p, err := loadPeer(tx, user)
	if err != nil {
		return err
	}
	ss, err := loadSessions(tx, user)
	switch {
	case err != nil:
		return err
	case len(ss) == 0:
		return ErrNoSession
	case p.Changed:
		return ErrUnaccepted
	}
	return nil
}

// StartSession starts a session with user's device from a bundle the
// directory handed out, after checking its signatures. A bundle whose
// identity key is not the pinned one still starts the session (commit
// it: the change is recorded) but reports changed: nothing is sealed
// until AcceptIdentity.
func (d *Device) StartSession(tx Tx, user uint64, b *codec.Bundle) (changed bool, err error) {
	ik, err := d.id()
	if err != nil {
		return false, err
	}
	pb, err := toBundle(b)
	if err != nil {
		return false, err
	}
	// session.Start checks both prekey signatures (the directory signs
	// the same bytes, PROTOCOL.md section 11) and aborts on a bad one.
	s, err := session.Start(ik, pb, d.cfg.Ratchet)
	if err != nil {
		return false, wrap(fmt.Sprintf("start session with %d", user), err)
	}
	if changed, err = see(tx, user, b.Identity); err != nil {
		return false, err
	}
	ss, err := loadSessions(tx, user)
	if err != nil {
		return false, err
	}
	if changed {
		ss = nil // the old ones are with a key the contact no longer has
	}
	return changed, storeSessions(tx, user, append([][]byte{s.Marshal()}, ss...))
}

// Seal encrypts c for user with the current session and returns the
// envelope (a SEND body).
func (d *Device) Seal(tx Tx, user uint64, c *envelope.Content) ([]byte, error) {
	// Ready's checks, on the one read of the sessions that Seal needs.
	p, err := loadPeer(tx, user)
	if err != nil {
		return nil, err
	}
	ss, err := loadSessions(tx, user)
	switch {
	case err != nil:
		return nil, err
	case len(ss) == 0:
		return nil, ErrNoSession
	case p.Changed:
		return nil, ErrUnaccepted
	}
	s, err := session.Unmarshal(ss[0])
	if err != nil {
		return nil, err
	}
	body, err := s.Seal(c)
	if err != nil {
		return nil, wrap(fmt.Sprintf("seal for %d", user), err)
	}
	ss[0] = s.Marshal()
	return body, storeSessions(tx, user, ss)
}

// Opened is what Open found in a message.
type Opened struct {
	// Body is the message text, for a Content of type body.
	Body []byte
	// Group is set when the Content was a sender-key distribution for
	// that group: a control message, not shown.
	Group uint64
	// NewIdentity is set when the message came from an identity key
	// other than the pinned one (the contact reinstalled, or someone is
	// in the middle): show it loudly.
	NewIdentity bool
}

// Open decrypts an envelope from user: with one of the sessions kept,
// or, for a prekey envelope, a new session accepted from it (whose
// one-time prekeys are then deleted). A failure changes nothing.
func (d *Device) Open(tx Tx, user uint64, body []byte) (*Opened, error) {
	ik, err := d.id()
	if err != nil {
		return nil, err
	}
	e, err := envelope.Unmarshal(body)
	if err != nil {
		return nil, wrap("envelope", err)
	}
	if e.Kind == envelope.KindSenderKey {
		return nil, fmt.Errorf("e2e: %w: sender-key envelope outside a group", session.ErrKind)
	}
	ss, err := loadSessions(tx, user)
	if err != nil {
		return nil, err
	}
	var last error = ErrNoSession
	for i, raw := range ss {
		s, err := session.Unmarshal(raw)
		if err != nil {
			return nil, err
		}
		c, err := s.Open(body)
		if err != nil {
			last = err
			continue
		}
		// Decrypted: this session is the one both sides use now.
		rest := append(append([][]byte{s.Marshal()}, ss[:i]...), ss[i+1:]...)
		if err := storeSessions(tx, user, rest); err != nil {
			return nil, err
		}
		return d.content(tx, user, c, false)
	}
	if !e.Kind.PreKey() {
		return nil, wrap(fmt.Sprintf("open from %d", user), last)
	}
	keys := preKeys{tx}
	s, c, m, err := session.Accept(ik, keys, body, d.cfg.Ratchet)
	if err != nil {
		return nil, wrap(fmt.Sprintf("accept session from %d", user), errors.Join(last, err))
	}
	if m.OneTimePreKeyID != nil {
		if err := tx.Delete(keyEC(*m.OneTimePreKeyID)); err != nil {
			return nil, err
		}
	}
	if kem, err := keys.KEMPreKey(m.KEMPreKeyID); err == nil && !kem.LastResort {
		if err := tx.Delete(keyKEM(m.KEMPreKeyID)); err != nil {
			return nil, err
		}
	}
	changed, err := see(tx, user, m.IdentityKey)
	if err != nil {
		return nil, err
	}
	if changed {
		ss = nil
	}
	if err := storeSessions(tx, user, append([][]byte{s.Marshal()}, ss...)); err != nil {
		return nil, err
	}
	return d.content(tx, user, c, changed)
}

// content turns an opened Content into Opened, storing a sender-key
// distribution.
func (d *Device) content(tx Tx, user uint64, c *envelope.Content, changed bool) (*Opened, error) {
	o := &Opened{NewIdentity: changed}
	if c.Type == envelope.ContentBody {
		o.Body = c.Body
		return o, nil
	}
	dist, err := senderkey.UnmarshalDistribution(c.Body)
	if err != nil {
		return nil, wrap("sender-key distribution", err)
	}
	o.Group = groupOf(dist.DistributionID)
	if o.Group == 0 {
		return nil, errors.New("e2e: sender-key distribution for group 0")
	}
	return o, d.receive(tx, o.Group, user, dist)
}
