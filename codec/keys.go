package codec

import (
	"crypto/sha256"
	"encoding/binary"
)

// The prekey directory (frames 0x60-0x67): a client uploads its
// end-to-end keys, others fetch a bundle of them to start a session.
// PROTOCOL.md section 10 describes the directory; this file holds the
// key types and the list layouts the generated methods call.

// Key sizes on the wire.
const (
	ECKeyLen  = 32   // an X25519 public key
	SigLen    = 64   // an XEdDSA signature
	KEMKeyLen = 1568 // an ML-KEM-1024 encapsulation key
)

// Per-frame bounds. They keep the largest KEYS_UPLOAD (signed prekey,
// last-resort key, MaxUploadEC EC keys and MaxUploadKEM KEM keys: a len of 64,931
// bytes) and the largest KEYS_BUNDLE (MaxBundles devices: 57,838)
// under MaxLen. A client with more keys sends more frames.
const (
	MaxUploadEC  = 300
	MaxUploadKEM = 32
	MaxBundles   = 32
)

// ECKey is an X25519 public key (an identity key or an EC prekey).
type ECKey [ECKeyLen]byte

// Signature is an XEdDSA signature by the owner's identity key.
type Signature [SigLen]byte

// Digest is a SHA-256 digest (KEYS_CHECK).
type Digest [32]byte

// ECPreKey is a one-time EC prekey.
type ECPreKey struct {
	ID  uint32
	Key ECKey
}

// SignedECKey is the signed EC prekey.
type SignedECKey struct {
	ID  uint32
	Key ECKey
	Sig Signature
}

// KEMPreKey is a signed ML-KEM-1024 prekey: one-time or last resort. Key
// is KEMKeyLen bytes; a decoded one aliases the frame, and Append writes
// exactly KEMKeyLen bytes (zero-padded or cut), so callers check the
// length before sending.
type KEMPreKey struct {
	ID  uint32
	Key []byte
	Sig Signature
}

// UploadFlags are KEYS_UPLOAD's flag bits.
type UploadFlags uint8

const (
	// UploadReplaceEC drops the device's stored one-time EC prekeys before
	// adding the frame's.
	UploadReplaceEC UploadFlags = 1 << 0
	// UploadReplaceKEM does the same for one-time KEM prekeys.
	UploadReplaceKEM UploadFlags = 1 << 1

	uploadFlagsKnown = UploadReplaceEC | UploadReplaceKEM
)

// Valid reports whether only defined bits are set.
func (f UploadFlags) Valid() bool { return f&^uploadFlagsKnown == 0 }

// KeysUpload stores the sender's keys for its device; KEYS_COUNTS answers
// it. Signed and LastResort are nil when unchanged; the first upload and
// one with a new identity key must carry both.
type KeysUpload struct {
	Req        uint32
	Flags      UploadFlags
	Identity   ECKey
	Signed     *SignedECKey
	LastResort *KEMPreKey
	EC         []ECPreKey
	KEM        []KEMPreKey
}

// KeysCount asks how many one-time prekeys the sender's device has left.
type KeysCount struct {
	Req uint32
}

// KeysCounts answers KEYS_COUNT and KEYS_UPLOAD.
type KeysCounts struct {
	Req    uint32
	Device uint16
	EC     uint16
	KEM    uint16
}

// KeysFetch asks for User's bundles: of one device, or all (Device 0).
type KeysFetch struct {
	Req    uint32
	User   uint64
	Device uint16
}

// Bundle is one device's keys as a fetch hands them out. EC is nil when
// the device has no one-time EC prekey left; KEM is a one-time KEM prekey
// or, when none is left, the last-resort key (only the owner can tell).
type Bundle struct {
	Device   uint16
	Identity ECKey
	Signed   SignedECKey
	EC       *ECPreKey
	KEM      KEMPreKey
}

// KeysBundle answers KEYS_FETCH.
type KeysBundle struct {
	Req     uint32
	User    uint64
	Bundles []Bundle
}

// KeysCheck compares a digest of the sender's long-lived keys with the
// server's copy; OK answers a match, ERROR 81 a mismatch.
type KeysCheck struct {
	Req    uint32
	Digest Digest
}

// KeysLow tells a client that its device's one-time prekeys fell below
// the server's threshold: upload more.
type KeysLow struct {
	Device uint16
	EC     uint16
	KEM    uint16
}

// IdentityChanged tells a client that User's Device uploaded a new
// identity key: sessions with it must be rebuilt and the safety number
// shown again.
type IdentityChanged struct {
	User   uint64
	Device uint16
}

// Key type bytes, as PQXDH's EncodeEC and EncodeKEM put them before a
// key in a signed message.
const (
	AlgX25519    = 0x05
	AlgMLKEM1024 = 0x0A
)

// SignedMessage is what the identity key signs (XEdDSA) for a signed
// prekey: alg u8 | key, the PQXDH spec's EncodeEC(key) for the signed EC
// prekey (alg AlgX25519) and EncodeKEM(key) for KEM prekeys (AlgMLKEM1024;
// one-time and last resort alike, so a bundle does not tell them apart).
// These are the bytes internal/e2e/pqxdh signs and verifies, so its keys
// upload as they are. The type byte keeps an EC key's signature from ever
// verifying as a KEM key's.
func SignedMessage(alg byte, key []byte) []byte {
	return append([]byte{alg}, key...)
}

// KeysDigest is the digest KEYS_CHECK carries: SHA-256 of identity |
// signed id u32 | signed key | last-resort id u32 | last-resort key.
func KeysDigest(identity *ECKey, signed *SignedECKey, lastResort *KEMPreKey) Digest {
	h := sha256.New()
	h.Write(identity[:])
	h.Write(binary.BigEndian.AppendUint32(nil, signed.ID))
	h.Write(signed.Key[:])
	h.Write(binary.BigEndian.AppendUint32(nil, lastResort.ID))
	h.Write(lastResort.Key)
	return Digest(h.Sum(nil))
}

// The writers and readers of the key fields, called by frames_gen.go.

func (w writer) raw(p []byte, n int) writer {
	if len(p) > n {
		p = p[:n]
	}
	w.b = append(w.b, p...)
	for i := len(p); i < n; i++ {
		w.b = append(w.b, 0)
	}
	return w
}

func (w writer) key32(k *[32]byte) writer { w.b = append(w.b, k[:]...); return w }

func (w writer) signed(k *SignedECKey) writer {
	w = w.u32(k.ID)
	w.b = append(append(w.b, k.Key[:]...), k.Sig[:]...)
	return w
}

func (w writer) kem(k *KEMPreKey) writer {
	w = w.u32(k.ID).raw(k.Key, KEMKeyLen)
	w.b = append(w.b, k.Sig[:]...)
	return w
}

// optSigned writes a presence byte, then the key when there is one.
func (w writer) optSigned(k *SignedECKey) writer {
	if k == nil {
		return w.u8(0)
	}
	return w.u8(1).signed(k)
}

func (w writer) optKEM(k *KEMPreKey) writer {
	if k == nil {
		return w.u8(0)
	}
	return w.u8(1).kem(k)
}

func (w writer) ecKeys(ks []ECPreKey) writer {
	ks = ks[:min(len(ks), MaxUploadEC)]
	w = w.u16(uint16(len(ks)))
	for i := range ks {
		w = w.u32(ks[i].ID)
		w.b = append(w.b, ks[i].Key[:]...)
	}
	return w
}

func (w writer) kemKeys(ks []KEMPreKey) writer {
	ks = ks[:min(len(ks), MaxUploadKEM)]
	w = w.u8(uint8(len(ks)))
	for i := range ks {
		w = w.kem(&ks[i])
	}
	return w
}

func (w writer) bundles(bs []Bundle) writer {
	bs = bs[:min(len(bs), MaxBundles)]
	w = w.u8(uint8(len(bs)))
	for i := range bs {
		b := &bs[i]
		w = w.u16(b.Device).key32((*[32]byte)(&b.Identity)).signed(&b.Signed)
		if b.EC == nil {
			w = w.u8(0)
		} else {
			w = w.u8(1).u32(b.EC.ID).key32((*[32]byte)(&b.EC.Key))
		}
		w = w.kem(&b.KEM)
	}
	return w
}

func (r *reader) key32(v *[32]byte, what string) *reader {
	copy(v[:], r.take(32, what))
	return r
}

func (r *reader) signed(k *SignedECKey, what string) *reader {
	r.u32(&k.ID, what+" id").key32((*[32]byte)(&k.Key), what)
	copy(k.Sig[:], r.take(SigLen, what+" signature"))
	return r
}

func (r *reader) kem(k *KEMPreKey, what string) *reader {
	r.u32(&k.ID, what+" id")
	k.Key = r.take(KEMKeyLen, what)
	copy(k.Sig[:], r.take(SigLen, what+" signature"))
	return r
}

// present reads a presence byte, which must be 0 or 1.
func (r *reader) present(what string) bool {
	var p bool
	r.flag(&p, "has "+what)
	return p && r.err == nil
}

func (r *reader) optSigned(v **SignedECKey) *reader {
	*v = nil
	if r.present("signed prekey") {
		*v = new(SignedECKey)
		r.signed(*v, "signed prekey")
	}
	return r
}

func (r *reader) optKEM(v **KEMPreKey) *reader {
	*v = nil
	if r.present("last resort") {
		*v = new(KEMPreKey)
		r.kem(*v, "last resort")
	}
	return r
}

func (r *reader) ecKeys(v *[]ECPreKey) *reader {
	var n uint16
	r.u16(&n, "ec count")
	if r.err == nil && n > MaxUploadEC {
		r.fail("more than 300 EC prekeys")
	}
	if r.err == nil && int(n)*(4+ECKeyLen) > len(r.b)-r.off {
		r.fail("truncated EC prekeys")
	}
	*v = nil
	if r.err == nil && n > 0 {
		*v = make([]ECPreKey, n)
	}
	for i := 0; i < len(*v) && r.err == nil; i++ {
		k := &(*v)[i]
		r.u32(&k.ID, "ec prekey id").key32((*[32]byte)(&k.Key), "ec prekey")
	}
	return r
}

func (r *reader) kemKeys(v *[]KEMPreKey) *reader {
	var n uint8
	r.u8(&n, "kem count")
	if r.err == nil && n > MaxUploadKEM {
		r.fail("more than 32 KEM prekeys")
	}
	if r.err == nil && int(n)*(4+KEMKeyLen+SigLen) > len(r.b)-r.off {
		r.fail("truncated KEM prekeys")
	}
	*v = nil
	if r.err == nil && n > 0 {
		*v = make([]KEMPreKey, n)
	}
	for i := 0; i < len(*v) && r.err == nil; i++ {
		r.kem(&(*v)[i], "kem prekey")
	}
	return r
}

// bundleMin is the least size of one bundle on the wire (no EC prekey).
const bundleMin = 2 + ECKeyLen + 4 + ECKeyLen + SigLen + 1 + 4 + KEMKeyLen + SigLen

func (r *reader) bundles(v *[]Bundle) *reader {
	var n uint8
	r.u8(&n, "count")
	switch {
	case r.err != nil:
	case n == 0:
		r.fail("empty bundle list")
	case n > MaxBundles:
		r.fail("more than 32 bundles")
	case int(n)*bundleMin > len(r.b)-r.off:
		r.fail("truncated bundles")
	}
	*v = nil
	if r.err == nil {
		*v = make([]Bundle, n)
	}
	for i := 0; i < len(*v) && r.err == nil; i++ {
		b := &(*v)[i]
		r.u16(&b.Device, "device").key32((*[32]byte)(&b.Identity), "identity").signed(&b.Signed, "signed prekey")
		if r.present("ec prekey") {
			b.EC = new(ECPreKey)
			r.u32(&b.EC.ID, "ec prekey id").key32((*[32]byte)(&b.EC.Key), "ec prekey")
		}
		r.kem(&b.KEM, "kem prekey")
	}
	return r
}
