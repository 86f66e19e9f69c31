package secure

import (
	"crypto/ecdh"
	"crypto/subtle"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/flynn/noise"
)

// x25519 is Noise's 25519 DH function for one handshake, on crypto/ecdh,
// doing each X25519 scalar multiplication once.
//
// Why not noise.DH25519: it goes through x/crypto's curve25519.X25519,
// which turns the private key into an *ecdh.PrivateKey on every call, and
// crypto/ecdh computes the public key of each new private key eagerly: a
// second scalar multiplication, thrown away. An XX responder then did 8
// multiplications (key generation and three DHs, two each) for 4 useful
// ones, most of a Noise login's CPU. Here the handshake keeps the
// *ecdh.PrivateKey of each key pair it holds (its static key, and the
// ephemeral it generates), so a DH is one multiplication.
//
// The function computes the same values under the same name ("25519"),
// so the protocol name, the handshake's bytes and the suite are
// unchanged; TestFastDHMatchesReference holds it to noise.DH25519.
type x25519 struct {
	keys  [2]keptKey // static and ephemeral, as they arrive
	n     int
	mults int // scalar multiplications made, for tests
}

// keptKey is a private key in both forms: the bytes Noise passes to DH,
// to find it by, and the ecdh key that multiplies.
type keptKey struct {
	private [32]byte
	k       *ecdh.PrivateKey
}

// suiteFor is Suite with dh as its DH function.
func suiteFor(dh *x25519) noise.CipherSuite {
	return noise.NewCipherSuite(dh, noise.CipherChaChaPoly, noise.HashBLAKE2s)
}

// keep remembers k for the handshake's DHs.
func (d *x25519) keep(k *ecdh.PrivateKey) {
	if d.n < len(d.keys) {
		d.keys[d.n].k = k
		copy(d.keys[d.n].private[:], k.Bytes())
		d.n++
	}
}

// newKey makes the ecdh form of a private key (one multiplication, for
// its public half) and keeps it.
func (d *x25519) newKey(private []byte) (*ecdh.PrivateKey, error) {
	k, err := ecdh.X25519().NewPrivateKey(private)
	if err != nil {
		return nil, fmt.Errorf("secure: x25519 key: %w", err)
	}
	d.mults++
	d.keep(k)
	return k, nil
}

// GenerateKeypair reads a private key from random (so that test vectors
// can fix it, as with noise.DH25519) and keeps it.
func (d *x25519) GenerateKeypair(random io.Reader) (noise.DHKey, error) {
	var private [32]byte
	if _, err := io.ReadFull(random, private[:]); err != nil {
		return noise.DHKey{}, fmt.Errorf("secure: x25519 key: %w", err)
	}
	k, err := d.newKey(private[:])
	if err != nil {
		return noise.DHKey{}, err
	}
	return noise.DHKey{Private: k.Bytes(), Public: k.PublicKey().Bytes()}, nil
}

// DH is X25519(private, public): one multiplication when private is a key
// this handshake holds, which is always the case in Noise.
func (d *x25519) DH(private, public []byte) ([]byte, error) {
	var k *ecdh.PrivateKey
	for i := range d.keys[:d.n] {
		if subtle.ConstantTimeCompare(d.keys[i].private[:], private) == 1 {
			k = d.keys[i].k
			break
		}
	}
	if k == nil {
		var err error
		if k, err = d.newKey(private); err != nil {
			return nil, err
		}
	}
	p, err := ecdh.X25519().NewPublicKey(public)
	if err != nil {
		return nil, fmt.Errorf("secure: x25519 peer key: %w", err)
	}
	d.mults++
	out, err := k.ECDH(p) // refuses a low-order peer key, as curve25519.X25519 does
	if err != nil {
		return nil, fmt.Errorf("secure: x25519: %w", err)
	}
	return out, nil
}

// forget wipes the keys once the handshake is done: a session needs
// none of them, and an ephemeral key must not outlive its handshake.
func (d *x25519) forget() {
	for i := range d.keys {
		clear(d.keys[i].private[:])
		d.keys[i].k = nil
	}
	d.n = 0
}

func (d *x25519) DHLen() int     { return 32 }
func (d *x25519) DHName() string { return noise.DH25519.DHName() }

// statics holds the ecdh form of the last static keys handshakes were
// given, newest first. A server has one static key for every handshake
// (two during a key rotation), so keeping them saves a multiplication per
// login; a key not among them pushes out the oldest.
var statics atomic.Pointer[[]keptKey]

// maxStatics is how many static keys statics keeps: a rotation's two,
// and one more for a test or a server that just retired one.
const maxStatics = 3

// staticDH returns a handshake's DH function holding static.
func staticDH(static Keypair) (*x25519, error) {
	d := &x25519{}
	var kept []keptKey
	if p := statics.Load(); p != nil {
		kept = *p
	}
	for _, k := range kept {
		if subtle.ConstantTimeCompare(k.private[:], static.Private) == 1 {
			d.keys[0], d.n = k, 1
			return d, nil
		}
	}
	if _, err := d.newKey(static.Private); err != nil {
		return nil, err
	}
	next := append([]keptKey{d.keys[0]}, kept[:min(len(kept), maxStatics-1)]...)
	statics.Store(&next)
	return d, nil
}
