package ratchet

import (
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"golang.org/x/crypto/chacha20poly1305"
)

// Header encryption (Double Ratchet spec, section 4). The header (DH, PN,
// N) is sealed under a header key that changes with every DH ratchet step,
// so the server sees neither the ratchet keys nor the message counters.
// Both sides must start the session with the HE variant; a session never
// switches.
const (
	// headerKeysInfo derives the root key and the two initial header keys
	// from the PQXDH secret (the spec's SK, shared_hka, shared_nhkb).
	headerKeysInfo = "chatd ratchet header keys v1"
	// rootHEInfo is KDF_RK for HE sessions: it yields a third output, the
	// next header key.
	rootHEInfo = "chatd ratchet root HE v1"
	// headerNonceInfo prefixes the HMAC that makes a header's nonce.
	headerNonceInfo = "chatd header nonce"
)

// HeaderNonceSize is the XChaCha20-Poly1305 nonce in front of an
// encrypted header.
const HeaderNonceSize = chacha20poly1305.NonceSizeX

// HEHeaderSize is the nonce and the sealed header (40 bytes + tag).
const HEHeaderSize = HeaderNonceSize + HeaderSize + 16

// HEOverhead is how many bytes an HE message adds to its plaintext.
const HEOverhead = HEHeaderSize + 16

// headerKeys splits the PQXDH secret into the root key and the initial
// header keys: Alice sends under hka, Bob's first sending chain uses nhkb.
func headerKeys(sk [32]byte) (rk, hka, nhkb [32]byte) {
	okm, err := hkdf.Key(sha256.New, sk[:], nil, headerKeysInfo, 96)
	if err != nil {
		panic("ratchet: hkdf: " + err.Error())
	}
	copy(rk[:], okm[:32])
	copy(hka[:], okm[32:64])
	copy(nhkb[:], okm[64:])
	return rk, hka, nhkb
}

// kdfRKHE is KDF_RK with a header key: 96 bytes of HKDF split into the
// next root key, a chain key and the next header key.
func kdfRKHE(rk *[32]byte, dh []byte) (newRK, ck, nhk [32]byte) {
	okm, err := hkdf.Key(sha256.New, dh, rk[:], rootHEInfo, 96)
	if err != nil {
		panic("ratchet: hkdf: " + err.Error())
	}
	copy(newRK[:], okm[:32])
	copy(ck[:], okm[32:64])
	copy(nhk[:], okm[64:])
	return newRK, ck, nhk
}

// InitAliceHE starts the initiator's side of a header-encrypted session.
// The peer must use InitBobHE with the same sk and ad.
func InitAliceHE(sk [32]byte, ad []byte, bobSignedPreKey []byte, cfg Config) (*State, error) {
	return initAliceHE(sk, ad, bobSignedPreKey, cfg, generateKey)
}

func initAliceHE(sk [32]byte, ad []byte, bobSPK []byte, cfg Config, newKey func() (*ecdh.PrivateKey, error)) (*State, error) {
	rk, hka, nhkb := headerKeys(sk)
	s := &State{cfg: cfg.withDefaults(), rk: rk, ad: append([]byte(nil), ad...), newKey: newKey, he: true}
	dh, err := s.firstStep(bobSPK)
	if err != nil {
		return nil, err
	}
	s.rk, s.cks, s.nhks = kdfRKHE(&s.rk, dh)
	s.hks, s.hasHKs = hka, true
	s.nhkr = nhkb
	return s, nil
}

// InitBobHE starts the responder's side of a header-encrypted session.
func InitBobHE(sk [32]byte, ad []byte, signedPreKey *ecdh.PrivateKey, cfg Config) *State {
	rk, hka, nhkb := headerKeys(sk)
	return &State{
		cfg:    cfg.withDefaults(),
		dhs:    signedPreKey,
		rk:     rk,
		ad:     append([]byte(nil), ad...),
		newKey: generateKey,
		he:     true,
		nhks:   nhkb,
		nhkr:   hka,
	}
}

// HeaderEncrypted reports whether the session uses header encryption.
func (s *State) HeaderEncrypted() bool { return s.he }

// headerNonce is unique per message: a header key serves one sending
// chain, in which N never repeats. Being an HMAC under the secret header
// key, it reveals nothing about N.
func headerNonce(hk *[32]byte, n uint32) []byte {
	m := hmac.New(sha256.New, hk[:])
	m.Write([]byte(headerNonceInfo))
	m.Write(binary.BigEndian.AppendUint32(nil, n))
	return m.Sum(nil)[:HeaderNonceSize]
}

// sealHeader returns nonce || XChaCha20-Poly1305(hk, header), aad = AD.
func sealHeader(hk *[32]byte, h *Header, ad []byte) []byte {
	aead, err := chacha20poly1305.NewX(hk[:])
	if err != nil {
		panic("ratchet: aead: " + err.Error()) // only for a wrong key size
	}
	nonce := headerNonce(hk, h.N)
	return aead.Seal(nonce, nonce, h.Marshal(), ad)
}

// openHeader decrypts the header of msg under hk.
func openHeader(hk *[32]byte, msg, ad []byte) (Header, bool) {
	aead, err := chacha20poly1305.NewX(hk[:])
	if err != nil {
		panic("ratchet: aead: " + err.Error())
	}
	b, err := aead.Open(nil, msg[:HeaderNonceSize], msg[HeaderNonceSize:HEHeaderSize], ad)
	if err != nil {
		return Header{}, false
	}
	h, err := ParseHeader(append(b, make([]byte, 16)...))
	return h, err == nil
}

// encryptHE is RatchetEncryptHE; Encrypt checked the chain and counter.
func (s *State) encryptHE(plaintext []byte) ([]byte, error) {
	next, mk := kdfCK(&s.cks)
	h := Header{PN: s.pn, N: s.ns}
	copy(h.DH[:], s.dhs.PublicKey().Bytes())
	msg, err := seal(sealHeader(&s.hks, &h, s.ad), &mk, plaintext, s.ad)
	if err != nil {
		return nil, err
	}
	s.cks = next
	s.ns++
	return msg, nil
}

// decryptHE is RatchetDecryptHE, transactional like Decrypt. A forged
// message costs at most one header trial per distinct stored header key
// plus two, since nothing is derived before a header authenticates.
func (s *State) decryptHE(msg []byte) ([]byte, error) {
	if len(msg) < HEOverhead {
		return nil, ErrMalformed
	}
	// TrySkippedMessageKeysHE, with one header trial per stored chain
	// rather than per stored key.
	for i := range s.skipped {
		hk := &s.skipped[i].dh
		if i > 0 && equal32(hk, &s.skipped[i-1].dh) {
			continue // keys are stored chain by chain
		}
		h, ok := openHeader(hk, msg, s.ad)
		if !ok {
			continue
		}
		if j := s.findSkipped(hk, h.N); j >= 0 {
			pt, err := openHE(msg, &s.skipped[j].mk, s.ad)
			if err != nil {
				return nil, err
			}
			s.skipped = slices.Delete(s.skipped, j, j+1)
			return pt, nil
		}
	}
	if s.hasHKr {
		if h, ok := openHeader(&s.hkr, msg, s.ad); ok {
			return s.decryptCurrentHE(msg, h)
		}
	}
	if h, ok := openHeader(&s.nhkr, msg, s.ad); ok {
		return s.decryptNewChainHE(msg, h)
	}
	return nil, ErrDecrypt
}

func (s *State) decryptCurrentHE(msg []byte, h Header) ([]byte, error) {
	if h.N == math.MaxUint32 {
		return nil, ErrCounter
	}
	return s.readCurrent(msg, h.N, &s.hkr, openHE)
}

// decryptNewChainHE handles a header that opened under NHKr: the sender
// stepped its DH ratchet.
func (s *State) decryptNewChainHE(msg []byte, h Header) ([]byte, error) {
	if h.N == math.MaxUint32 {
		return nil, ErrCounter
	}
	oldSkip, err := s.skipRest(h.PN, h.N, &s.hkr)
	if err != nil {
		return nil, err
	}
	peer, err := ecdh.X25519().NewPublicKey(h.DH[:])
	if err != nil {
		return nil, ErrDecrypt
	}
	dh, err := s.dhs.ECDH(peer)
	if err != nil {
		return nil, ErrDecrypt
	}
	hkr := s.nhkr
	rk, ckr, nhkr := kdfRKHE(&s.rk, dh)
	ckr, newSkip, mk := skipTo(ckr, 0, h.N, &hkr)
	pt, err := openHE(msg, &mk, s.ad)
	if err != nil {
		return nil, err
	}

	dhs, err := s.newKey()
	if err != nil {
		return nil, fmt.Errorf("ratchet: new ratchet key: %w", err)
	}
	dh2, err := dhs.ECDH(peer)
	if err != nil {
		return nil, ErrDecrypt
	}
	rk, cks, nhks := kdfRKHE(&rk, dh2)

	s.store(oldSkip)
	s.store(newSkip)
	s.pn, s.ns, s.nr = s.ns, 0, h.N+1
	s.dhr, s.hasDHr = h.DH, true
	s.dhs = dhs
	s.rk = rk
	s.hks, s.hasHKs = s.nhks, true
	s.hkr, s.hasHKr = hkr, true
	s.nhks, s.nhkr = nhks, nhkr
	s.ckr, s.hasCKr = ckr, true
	s.cks, s.hasCKs = cks, true
	return pt, nil
}

// openHE opens the body of an HE message; the AEAD authenticates AD and
// the whole encrypted header (nonce included).
func openHE(msg []byte, mk *[32]byte, ad []byte) ([]byte, error) {
	key, nonce := messageKeys(mk)
	aead, err := chacha20poly1305.New(key[:])
	if err != nil {
		return nil, fmt.Errorf("ratchet: aead: %w", err)
	}
	aad := make([]byte, 0, len(ad)+HEHeaderSize)
	aad = append(append(aad, ad...), msg[:HEHeaderSize]...)
	pt, err := aead.Open(nil, nonce[:], msg[HEHeaderSize:], aad)
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}
