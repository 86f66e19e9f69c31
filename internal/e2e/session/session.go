// Package session ties PQXDH, the Double Ratchet and the envelope format
// into the two calls a chat client needs per peer device: Seal a Content
// into message-body bytes, and Open them again. It also starts sessions
// (Start on the initiator, Accept on the responder) and wraps sender-key
// group messages.
package session

import (
	"crypto/ecdh"
	"errors"
	"fmt"

	"github.com/chatd/chatd/internal/e2e/envelope"
	"github.com/chatd/chatd/internal/e2e/internal/wire"
	"github.com/chatd/chatd/internal/e2e/pqxdh"
	"github.com/chatd/chatd/internal/e2e/ratchet"
)

// ErrKind reports an envelope of a kind the call does not handle.
var ErrKind = errors.New("session: wrong envelope kind")

// Session is one 1:1 session with one peer device. Persist it (Marshal)
// after every Seal and Open, before sending or showing anything.
type Session struct {
	state *ratchet.State
	// initial is the PQXDH message the initiator repeats in every
	// envelope until the responder's first reply decrypts.
	initial *pqxdh.InitialMessage
}

// Start begins a session with the device whose bundle the key directory
// returned. It fails, as PQXDH requires, if a prekey signature is bad.
func Start(identity *ecdh.PrivateKey, b *pqxdh.Bundle, cfg ratchet.Config) (*Session, error) {
	return start(identity, b, cfg, ratchet.InitAlice)
}

// StartHE is Start for a session whose ratchet encrypts its headers
// (PROTOCOL.md 14.4.1). Its envelopes are kinds prekey-he and ratchet-he,
// from which the responder's Accept learns the choice; a peer that does
// not implement them cannot read the session.
func StartHE(identity *ecdh.PrivateKey, b *pqxdh.Bundle, cfg ratchet.Config) (*Session, error) {
	return start(identity, b, cfg, ratchet.InitAliceHE)
}

type initAlice func(sk [32]byte, ad, spk []byte, cfg ratchet.Config) (*ratchet.State, error)

func start(identity *ecdh.PrivateKey, b *pqxdh.Bundle, cfg ratchet.Config, init initAlice) (*Session, error) {
	m, sec, err := pqxdh.Initiate(identity, b)
	if err != nil {
		return nil, err
	}
	st, err := init(sec.SharedKey, sec.AssociatedData, b.SignedPreKey.Public[:], cfg)
	if err != nil {
		return nil, err
	}
	return &Session{state: st, initial: m}, nil
}

// PreKeys looks up the responder's private prekeys by ID. A missing key is
// an error (the initiator used a stale bundle, or replayed a used one-time
// key).
type PreKeys interface {
	SignedPreKey(id uint32) (*pqxdh.SignedPreKeyPrivate, error)
	OneTimePreKey(id uint32) (*pqxdh.OneTimePreKeyPrivate, error)
	KEMPreKey(id uint32) (*pqxdh.KEMPreKeyPrivate, error)
}

// Accept starts the responder's side from a prekey envelope and opens its
// message. Nothing is created unless the message decrypts. The returned
// initial message names the prekeys used: the caller deletes the one-time
// EC and KEM keys among them once the session is stored.
func Accept(identity *ecdh.PrivateKey, keys PreKeys, body []byte, cfg ratchet.Config) (*Session, *envelope.Content, *pqxdh.InitialMessage, error) {
	e, err := envelope.Unmarshal(body)
	if err != nil {
		return nil, nil, nil, err
	}
	if !e.Kind.PreKey() {
		return nil, nil, nil, fmt.Errorf("%w: %s, want prekey", ErrKind, e.Kind)
	}
	m := e.Initial
	spk, err := keys.SignedPreKey(m.SignedPreKeyID)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("session: signed prekey %d: %w", m.SignedPreKeyID, err)
	}
	kem, err := keys.KEMPreKey(m.KEMPreKeyID)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("session: KEM prekey %d: %w", m.KEMPreKeyID, err)
	}
	var opk *pqxdh.OneTimePreKeyPrivate
	if m.OneTimePreKeyID != nil {
		if opk, err = keys.OneTimePreKey(*m.OneTimePreKeyID); err != nil {
			return nil, nil, nil, fmt.Errorf("session: one-time prekey %d: %w", *m.OneTimePreKeyID, err)
		}
	}
	sec, err := pqxdh.Respond(identity, spk, opk, kem, m)
	if err != nil {
		return nil, nil, nil, err
	}
	// The initiator chose the variant; the envelope kind says which.
	s := &Session{state: ratchet.InitBob(sec.SharedKey, sec.AssociatedData, spk.Key, cfg)}
	if e.Kind.HeaderEncrypted() {
		s.state = ratchet.InitBobHE(sec.SharedKey, sec.AssociatedData, spk.Key, cfg)
	}
	c, err := s.open(e.Message)
	if err != nil {
		return nil, nil, nil, err
	}
	return s, c, m, nil
}

// Seal encrypts c as the next message to the peer and returns the message
// body. The initiator's envelopes are prekey envelopes until a reply
// arrives, so the responder can start the session from any of them.
func (s *Session) Seal(c *envelope.Content) ([]byte, error) {
	msg, err := s.state.Encrypt(c.Marshal())
	if err != nil {
		return nil, err
	}
	he := s.state.HeaderEncrypted()
	e := envelope.Envelope{Kind: envelope.KindRatchet, Message: msg}
	switch {
	case s.initial != nil && he:
		e.Kind, e.Initial = envelope.KindPreKeyHE, s.initial
	case s.initial != nil:
		e.Kind, e.Initial = envelope.KindPreKey, s.initial
	case he:
		e.Kind = envelope.KindRatchetHE
	}
	return e.Marshal()
}

// Open decrypts a message body from the peer. A message that does not
// decrypt leaves the session unchanged. One that decrypts but holds a
// malformed Content returns an error after the ratchet has used its key
// (the peer authenticated it, so it is the peer's bug and cannot be read
// again); persist the session in that case too. A prekey envelope is read
// as its ratchet message: the initiator repeats its initial message until
// it hears back.
func (s *Session) Open(body []byte) (*envelope.Content, error) {
	e, err := envelope.Unmarshal(body)
	if err != nil {
		return nil, err
	}
	switch e.Kind {
	case envelope.KindPreKey, envelope.KindRatchet, envelope.KindPreKeyHE, envelope.KindRatchetHE:
	default:
		return nil, fmt.Errorf("%w: %s", ErrKind, e.Kind)
	}
	if e.Kind.HeaderEncrypted() != s.state.HeaderEncrypted() {
		return nil, fmt.Errorf("%w: %s in a session with header encryption %t", ErrKind, e.Kind, s.state.HeaderEncrypted())
	}
	return s.open(e.Message)
}

func (s *Session) open(msg []byte) (*envelope.Content, error) {
	pt, err := s.state.Decrypt(msg)
	if err != nil {
		return nil, err
	}
	if s.state.HasReceived() {
		s.initial = nil
	}
	// The message authenticated, so a bad Content is the peer's bug; the
	// ratchet has already (correctly) used up its key.
	return envelope.UnmarshalContent(pt)
}

// sessionVersion is the first byte of a marshalled Session.
const sessionVersion = 1

// Marshal encodes the session for the client's database (ENVELOPE.md,
// "Session state").
func (s *Session) Marshal() []byte {
	out := []byte{sessionVersion, 0}
	if s.initial != nil {
		out[1] = 1
		out = append(out, s.initial.Marshal()...)
	}
	return append(out, s.state.Marshal()...)
}

// Unmarshal decodes a Session written by Marshal.
func Unmarshal(data []byte) (*Session, error) {
	r := wire.NewReader(data)
	if v := r.U8(); v != sessionVersion {
		r.Failf("session: version %d", v)
	}
	s := &Session{}
	switch r.U8() {
	case 0:
	case 1:
		s.initial = pqxdh.ReadInitialMessage(r)
	default:
		r.Failf("session: bad flags")
	}
	rest := r.Rest()
	if err := r.Finish(); err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	st, err := ratchet.Unmarshal(rest)
	if err != nil {
		return nil, err
	}
	s.state = st
	return s, nil
}

// HeaderEncrypted reports whether the session's ratchet encrypts headers.
func (s *Session) HeaderEncrypted() bool { return s.state.HeaderEncrypted() }
