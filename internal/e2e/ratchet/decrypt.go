package ratchet

import (
	"crypto/ecdh"
	"fmt"
	"math"
	"slices"
)

// Decrypt authenticates and decrypts a message made by the peer's Encrypt.
//
// It computes every change (skipped keys, new chains, a DH ratchet step) in
// locals and writes them to s only after the AEAD has accepted the message,
// so any error leaves s untouched.
func (s *State) Decrypt(msg []byte) ([]byte, error) {
	if s.he {
		return s.decryptHE(msg)
	}
	h, err := ParseHeader(msg)
	if err != nil {
		return nil, err
	}
	if h.N == math.MaxUint32 {
		// Encrypt never uses the last number; accepting it would wrap Nr
		// to 0 and reopen used keys.
		return nil, ErrCounter
	}

	// A message we stored a key for: use and forget the key.
	if i := s.findSkipped(&h.DH, h.N); i >= 0 {
		pt, err := open(msg, &s.skipped[i].mk, s.ad)
		if err != nil {
			return nil, err
		}
		s.skipped = slices.Delete(s.skipped, i, i+1)
		return pt, nil
	}

	if s.hasDHr && equal32(&h.DH, &s.dhr) {
		return s.decryptCurrent(msg, h)
	}
	return s.decryptNewChain(msg, h)
}

// decryptCurrent handles a message on the current receiving chain.
func (s *State) decryptCurrent(msg []byte, h Header) ([]byte, error) {
	if !s.hasCKr {
		// Only Alice's initial DHr (Bob's signed prekey) lacks a chain;
		// Bob never sends under it.
		return nil, ErrDecrypt
	}
	return s.readCurrent(msg, h.N, &h.DH, open)
}

// opener opens a message's body with its message key: open, or openHE.
type opener func(msg []byte, mk *[32]byte, ad []byte) ([]byte, error)

// readCurrent reads message n of the current receiving chain, whose
// skipped keys are stored under key (the chain's ratchet key, or its
// header key), and commits the chain's step once the body opened.
func (s *State) readCurrent(msg []byte, n uint32, key *[32]byte, open opener) ([]byte, error) {
	if n < s.nr {
		return nil, ErrOldMessage
	}
	if n-s.nr > s.cfg.MaxSkip {
		return nil, fmt.Errorf("%w: %d > %d", ErrTooManySkipped, n-s.nr, s.cfg.MaxSkip)
	}
	ck, skip, mk := skipTo(s.ckr, s.nr, n, key)
	pt, err := open(msg, &mk, s.ad)
	if err != nil {
		return nil, err
	}
	s.ckr, s.nr = ck, n+1
	s.store(skip)
	return pt, nil
}

// skipRest returns the keys left in the current receiving chain up to
// pn (the sender's previous chain length), stored under key, before a DH
// ratchet step to a chain read up to n: both within MaxSkip.
func (s *State) skipRest(pn, n uint32, key *[32]byte) ([]skipped, error) {
	var rest []skipped
	if s.hasCKr && pn > s.nr {
		if pn-s.nr > s.cfg.MaxSkip {
			return nil, fmt.Errorf("%w: %d left in the old chain", ErrTooManySkipped, pn-s.nr)
		}
		_, rest, _ = skipTo(s.ckr, s.nr, pn, key)
	}
	if total := uint64(len(rest)) + uint64(n); total > uint64(s.cfg.MaxSkip) {
		return nil, fmt.Errorf("%w: %d > %d", ErrTooManySkipped, total, s.cfg.MaxSkip)
	}
	return rest, nil
}

// decryptNewChain handles a message under a ratchet key we have not seen:
// finish the current receiving chain up to PN, step the DH ratchet, and
// read message N of the new chain.
func (s *State) decryptNewChain(msg []byte, h Header) ([]byte, error) {
	oldSkip, err := s.skipRest(h.PN, h.N, &s.dhr)
	if err != nil {
		return nil, err
	}
	peer, err := ecdh.X25519().NewPublicKey(h.DH[:])
	if err != nil {
		return nil, ErrDecrypt
	}
	dh, err := s.dhs.ECDH(peer) // refuses the all-zero result of small-order keys
	if err != nil {
		return nil, ErrDecrypt
	}
	rk, ckr := kdfRK(&s.rk, dh)
	ckr, newSkip, mk := skipTo(ckr, 0, h.N, &h.DH)
	pt, err := open(msg, &mk, s.ad)
	if err != nil {
		return nil, err
	}

	// Authentic: prepare our next sending chain, then commit everything.
	dhs, err := s.newKey()
	if err != nil {
		return nil, fmt.Errorf("ratchet: new ratchet key: %w", err)
	}
	dh2, err := dhs.ECDH(peer)
	if err != nil {
		return nil, ErrDecrypt
	}
	rk, cks := kdfRK(&rk, dh2)

	s.store(oldSkip)
	s.store(newSkip)
	s.pn, s.ns, s.nr = s.ns, 0, h.N+1
	s.dhr, s.hasDHr = h.DH, true
	s.dhs = dhs
	s.rk = rk
	s.ckr, s.hasCKr = ckr, true
	s.cks, s.hasCKs = cks, true
	return pt, nil
}

// skipTo advances a receiving chain from message from to message to,
// returning the chain key after message to, the keys of the messages in
// between, and the key of message to.
func skipTo(ck [32]byte, from, to uint32, dh *[32]byte) (next [32]byte, skip []skipped, mk [32]byte) {
	if to > from {
		skip = make([]skipped, 0, to-from) // callers bound to-from by MaxSkip
	}
	for n := from; n < to; n++ {
		var k [32]byte
		ck, k = kdfCK(&ck)
		skip = append(skip, skipped{dh: *dh, n: n, mk: k})
	}
	next, mk = kdfCK(&ck)
	return next, skip, mk
}

func (s *State) findSkipped(dh *[32]byte, n uint32) int {
	for i := range s.skipped {
		if s.skipped[i].n == n && equal32(&s.skipped[i].dh, dh) {
			return i
		}
	}
	return -1
}

// store keeps skipped keys, forgetting the oldest beyond MaxStored.
func (s *State) store(k []skipped) {
	s.skipped = append(s.skipped, k...)
	if over := len(s.skipped) - int(s.cfg.MaxStored); over > 0 {
		s.skipped = slices.Delete(s.skipped, 0, over)
	}
}
