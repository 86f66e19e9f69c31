// Package ratchet implements the Double Ratchet (Signal, "The Double Ratchet
// Algorithm", rev. 1) over X25519, HKDF/HMAC-SHA256 and ChaCha20-Poly1305,
// with header encryption as an option chosen when the session starts
// (InitAliceHE, InitBobHE; spec section 4).
//
// Decryption is transactional: a message that fails to decrypt, for any
// reason, leaves the State exactly as it was (Marshal gives the same bytes),
// so a forged or corrupted message can neither advance nor poison a session.
// A message key is used once: a replayed message fails.
//
// A State is not safe for concurrent use. The caller persists it (Marshal)
// after every successful Encrypt and Decrypt, before it sends the ciphertext
// or shows the plaintext.
package ratchet

import (
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"fmt"
)

// Config bounds the work and memory one session may spend on missing
// messages.
type Config struct {
	// MaxSkip is the most message keys a single incoming message may make
	// the receiver derive and store (across the end of the previous chain
	// and the start of the new one). Larger gaps are refused.
	MaxSkip uint32
	// MaxStored is the most skipped message keys kept; beyond it the oldest
	// are forgotten and their messages can no longer be read.
	MaxStored uint32
}

// DefaultConfig is what a zero Config means.
var DefaultConfig = Config{MaxSkip: 1000, MaxStored: 2000}

func (c Config) withDefaults() Config {
	if c.MaxSkip == 0 {
		c.MaxSkip = DefaultConfig.MaxSkip
	}
	if c.MaxStored == 0 {
		c.MaxStored = DefaultConfig.MaxStored
	}
	return c
}

var (
	// ErrNoSendingChain reports Encrypt on Bob's side before Alice's first
	// message arrived.
	ErrNoSendingChain = errors.New("ratchet: no sending chain yet")
	// ErrDecrypt reports a message that does not authenticate.
	ErrDecrypt = errors.New("ratchet: message does not authenticate")
	// ErrOldMessage reports a message whose key was already used or
	// forgotten: a replay, or a message older than MaxStored allows.
	ErrOldMessage = errors.New("ratchet: message key already used or forgotten")
	// ErrTooManySkipped reports a message that would skip more than
	// MaxSkip message keys.
	ErrTooManySkipped = errors.New("ratchet: message skips too many keys")
	// ErrCounter reports a sending chain that ran out of message numbers.
	ErrCounter = errors.New("ratchet: message counter exhausted")
)

// skipped is a stored key for a message not yet received.
type skipped struct {
	dh [32]byte // the chain's ratchet key, or its header key with HE
	n  uint32
	mk [32]byte
}

// State is one side of a Double Ratchet session.
type State struct {
	cfg    Config
	dhs    *ecdh.PrivateKey
	dhr    [32]byte
	hasDHr bool
	rk     [32]byte
	cks    [32]byte
	hasCKs bool
	ckr    [32]byte
	hasCKr bool
	ns     uint32
	nr     uint32
	pn     uint32
	ad     []byte
	// skipped holds keys of missing messages, oldest first, so eviction
	// and Marshal are deterministic.
	skipped []skipped

	// Header encryption (he.go). With he set, skipped keys are indexed by
	// the header key of their chain instead of the sender's ratchet key.
	he         bool
	hks, hkr   [32]byte
	nhks, nhkr [32]byte
	hasHKs     bool
	hasHKr     bool

	// newKey makes ratchet key pairs; tests replace it with a seeded one.
	newKey func() (*ecdh.PrivateKey, error)
}

func generateKey() (*ecdh.PrivateKey, error) {
	return ecdh.X25519().GenerateKey(rand.Reader)
}

// InitAlice starts the initiator's side from the PQXDH secret sk, the
// associated data ad and Bob's signed prekey, which serves as his first
// ratchet key.
func InitAlice(sk [32]byte, ad []byte, bobSignedPreKey []byte, cfg Config) (*State, error) {
	return initAlice(sk, ad, bobSignedPreKey, cfg, generateKey)
}

func initAlice(sk [32]byte, ad []byte, bobSPK []byte, cfg Config, newKey func() (*ecdh.PrivateKey, error)) (*State, error) {
	s := &State{cfg: cfg.withDefaults(), rk: sk, ad: append([]byte(nil), ad...), newKey: newKey}
	dh, err := s.firstStep(bobSPK)
	if err != nil {
		return nil, err
	}
	s.rk, s.cks = kdfRK(&s.rk, dh)
	return s, nil
}

// firstStep makes Alice's first ratchet key and its DH with Bob's signed
// prekey, his first ratchet key; the caller derives the sending chain.
func (s *State) firstStep(bobSPK []byte) ([]byte, error) {
	pub, err := ecdh.X25519().NewPublicKey(bobSPK)
	if err != nil {
		return nil, fmt.Errorf("ratchet: Bob's signed prekey: %w", err)
	}
	if s.dhs, err = s.newKey(); err != nil {
		return nil, fmt.Errorf("ratchet: ratchet key: %w", err)
	}
	dh, err := s.dhs.ECDH(pub)
	if err != nil {
		return nil, fmt.Errorf("ratchet: Bob's signed prekey: %w", err)
	}
	copy(s.dhr[:], bobSPK)
	s.hasDHr, s.hasCKs = true, true
	return dh, nil
}

// InitBob starts the responder's side from the PQXDH secret, the associated
// data and the signed prekey Alice used, which becomes his first ratchet key.
func InitBob(sk [32]byte, ad []byte, signedPreKey *ecdh.PrivateKey, cfg Config) *State {
	return &State{
		cfg:    cfg.withDefaults(),
		dhs:    signedPreKey,
		rk:     sk,
		ad:     append([]byte(nil), ad...),
		newKey: generateKey,
	}
}

// HasReceived reports whether a message from the peer has decrypted. Until
// then the initiator keeps sending its PQXDH initial message along, since
// Bob cannot read anything without it.
func (s *State) HasReceived() bool { return s.hasCKr }

// AssociatedData returns the session's AD (from PQXDH).
func (s *State) AssociatedData() []byte { return append([]byte(nil), s.ad...) }

// Skipped is the number of stored skipped message keys.
func (s *State) Skipped() int { return len(s.skipped) }
