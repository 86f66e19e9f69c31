package xeddsa

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"math/big"
	mrand "math/rand/v2"
	"testing"

	"filippo.io/edwards25519"

	"github.com/chatd/chatd/internal/e2e/internal/golden"
)

func newKey(t testing.TB, r interface{ Read([]byte) (int, error) }) *ecdh.PrivateKey {
	t.Helper()
	b := make([]byte, 32)
	if _, err := r.Read(b); err != nil {
		t.Fatal(err)
	}
	k, err := ecdh.X25519().NewPrivateKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func random64(t testing.TB) []byte {
	z := make([]byte, RandomSize)
	if _, err := rand.Read(z); err != nil {
		t.Fatal(err)
	}
	return z
}

func TestSignVerify(t *testing.T) {
	negated := 0
	for i := range 200 {
		k := newKey(t, rand.Reader)
		msg := []byte{byte(i), 'm', 's', 'g'}
		sig, err := Sign(k.Bytes(), msg, random64(t))
		if err != nil {
			t.Fatal(err)
		}
		pub := k.PublicKey().Bytes()
		if !Verify(pub, msg, sig) {
			t.Fatalf("key %d: valid signature refused", i)
		}
		// An independent check of the key mapping and the signature
		// equation: the Edwards key A must map back to the same u under
		// stdlib X25519, and the signature must be a plain Ed25519 one.
		A, _ := keyPair(k.Bytes())
		P, err := new(edwards25519.Point).SetBytes(A)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(P.BytesMontgomery(), pub) {
			t.Fatalf("key %d: Edwards key does not map to the X25519 public key", i)
		}
		if !ed25519.Verify(ed25519.PublicKey(A), msg, sig) {
			t.Fatalf("key %d: not a valid Ed25519 signature under A", i)
		}
		E := new(edwards25519.Point).ScalarBaseMult(mustClamp(k.Bytes()))
		if E.Bytes()[31]&0x80 != 0 {
			negated++
		}

		if Verify(pub, append(msg, 0), sig) {
			t.Fatal("signature verified for another message")
		}
		for _, bit := range []int{0, 255, 256, 511} {
			bad := bytes.Clone(sig)
			bad[bit/8] ^= 1 << (bit % 8)
			if Verify(pub, msg, bad) {
				t.Fatalf("signature with bit %d flipped verified", bit)
			}
		}
		other := newKey(t, rand.Reader)
		if Verify(other.PublicKey().Bytes(), msg, sig) {
			t.Fatal("signature verified under another key")
		}
	}
	// Both branches of calculate_key_pair must have run.
	if negated == 0 || negated == 200 {
		t.Fatalf("sign bit set in %d of 200 keys; the negation branch was not exercised", negated)
	}
}

func mustClamp(b []byte) *edwards25519.Scalar {
	s, err := edwards25519.NewScalar().SetBytesWithClamping(b)
	if err != nil {
		panic(err)
	}
	return s
}

func TestSignArgs(t *testing.T) {
	if _, err := Sign(make([]byte, 31), nil, make([]byte, 64)); err == nil {
		t.Fatal("short private key accepted")
	}
	if _, err := Sign(make([]byte, 32), nil, make([]byte, 32)); err == nil {
		t.Fatal("short random accepted")
	}
	k := newKey(t, rand.Reader)
	sig, _ := Sign(k.Bytes(), nil, random64(t))
	if Verify(k.PublicKey().Bytes()[:31], nil, sig) || Verify(k.PublicKey().Bytes(), nil, sig[:63]) {
		t.Fatal("short input verified")
	}
}

// littleEndian encodes n as 32 little-endian bytes.
func littleEndian(n *big.Int) []byte {
	b := n.FillBytes(make([]byte, 32))
	for i, j := 0, 31; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	return b
}

var p = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))

// smallOrderU lists the Montgomery u of the points of order 1, 2, 4 and 8
// together with their non-canonical aliases, as in libsodium's blocklist.
func smallOrderU(t *testing.T) [][]byte {
	var out [][]byte
	for _, h := range []string{
		"0000000000000000000000000000000000000000000000000000000000000000",
		"0100000000000000000000000000000000000000000000000000000000000000",
		"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
		"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // p-1
		"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // p
		"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // p+1
	} {
		b, err := hex.DecodeString(h)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func TestLowOrderPublicKeysRefused(t *testing.T) {
	// For a small-order A, sB - hA with s = 0 is itself small-order, so a
	// verifier without the check could be fooled by R = -hA; try every R of
	// small order with s = 0.
	var smallR [][]byte
	for _, u := range smallOrderU(t)[:4] {
		P, err := edwardsPoint(u)
		if err == nil {
			smallR = append(smallR, P.Bytes(), new(edwards25519.Point).Negate(P).Bytes())
		}
	}
	smallR = append(smallR, edwards25519.NewIdentityPoint().Bytes())
	if len(smallR) != 9 {
		t.Fatalf("built %d small-order R, want 9", len(smallR))
	}
	for _, u := range smallOrderU(t) {
		if ValidPublicKey(u) {
			t.Fatalf("small-order u %x accepted", u)
		}
		for _, R := range smallR {
			sig := append(bytes.Clone(R), make([]byte, 32)...)
			if Verify(u, []byte("m"), sig) {
				t.Fatalf("forged signature under small-order u %x verified", u)
			}
		}
	}
}

// edwardsPoint maps u to Edwards without the small-order check, for tests.
func edwardsPoint(u []byte) (*edwards25519.Point, error) {
	var y big.Int
	un := new(big.Int).SetBytes(reverse(u))
	num := new(big.Int).Sub(un, big.NewInt(1))
	den := new(big.Int).Add(un, big.NewInt(1))
	// u = -1 has no inverse; ModInverse then leaves den at 0, so y = 0.
	den.ModInverse(den.Mod(den, p), p)
	y.Mul(num, den).Mod(&y, p)
	return new(edwards25519.Point).SetBytes(littleEndian(&y))
}

func reverse(b []byte) []byte {
	r := bytes.Clone(b)
	for i, j := 0, len(r)-1; i < j; i, j = i+1, j-1 {
		r[i], r[j] = r[j], r[i]
	}
	return r
}

// TestNonCanonicalRefused signs with the base point (u = 9, Edwards key B,
// private scalar 1), which has the rare property that u + p still fits in
// 255 bits, and checks that only the canonical encoding of the key verifies.
func TestNonCanonicalRefused(t *testing.T) {
	nine := littleEndian(big.NewInt(9))
	ninePlusP := littleEndian(new(big.Int).Add(p, big.NewInt(9)))
	if !ValidPublicKey(nine) {
		t.Fatal("base point refused")
	}
	if ValidPublicKey(ninePlusP) {
		t.Fatal("non-canonical u = 9 + p accepted")
	}
	msg := []byte("canonical")
	sig := signWithScalar(t, edwards25519.NewScalar().Add(edwards25519.NewScalar(), scalarOne()), msg)
	if !Verify(nine, msg, sig) {
		t.Fatal("signature by the base point refused")
	}
	if Verify(ninePlusP, msg, sig) {
		t.Fatal("signature verified under a non-canonical public key")
	}
	top := bytes.Clone(nine)
	top[31] |= 0x80
	if Verify(top, msg, sig) {
		t.Fatal("signature verified under a public key with the top bit set")
	}

	// s + q is the same scalar mod q; a lax verifier would accept it.
	q, _ := new(big.Int).SetString("7237005577332262213973186563042994240857116359379907606001950938285454250989", 10)
	s := new(big.Int).SetBytes(reverse(sig[32:]))
	bad := append(bytes.Clone(sig[:32]), littleEndian(s.Add(s, q))...)
	if Verify(nine, msg, bad) {
		t.Fatal("signature with s >= q verified")
	}
}

func scalarOne() *edwards25519.Scalar {
	b := make([]byte, 32)
	b[0] = 1
	s, _ := edwards25519.NewScalar().SetCanonicalBytes(b)
	return s
}

// signWithScalar makes an Ed25519-style signature with the Edwards key aB
// (sign bit of aB must be 0).
func signWithScalar(t *testing.T, a *edwards25519.Scalar, msg []byte) []byte {
	t.Helper()
	A := new(edwards25519.Point).ScalarBaseMult(a).Bytes()
	if A[31]&0x80 != 0 {
		t.Fatal("test key has sign bit set")
	}
	r, _ := edwards25519.NewScalar().SetUniformBytes(random64(t))
	R := new(edwards25519.Point).ScalarBaseMult(r).Bytes()
	h, err := challenge(R, A, msg)
	if err != nil {
		t.Fatal(err)
	}
	s := edwards25519.NewScalar().MultiplyAdd(h, a, r)
	return append(R, s.Bytes()...)
}

type vector struct {
	Private   string `json:"private"`
	Public    string `json:"public"`
	Message   string `json:"message"`
	Random    string `json:"random"`
	Signature string `json:"signature"`
}

// TestKnownAnswers freezes signatures from a seeded RNG; Sign is
// deterministic given Z, so any change here is a change of algorithm.
func TestKnownAnswers(t *testing.T) {
	rng := mrand.NewChaCha8([32]byte{'x', 'e', 'd', 'd', 's', 'a'})
	var vs []vector
	for i := range 6 {
		k := newKey(t, rng)
		msg := make([]byte, i*13)
		rng.Read(msg)
		z := make([]byte, RandomSize)
		rng.Read(z)
		sig, err := Sign(k.Bytes(), msg, z)
		if err != nil {
			t.Fatal(err)
		}
		if !Verify(k.PublicKey().Bytes(), msg, sig) {
			t.Fatalf("vector %d does not verify", i)
		}
		vs = append(vs, vector{
			Private:   hex.EncodeToString(k.Bytes()),
			Public:    hex.EncodeToString(k.PublicKey().Bytes()),
			Message:   hex.EncodeToString(msg),
			Random:    hex.EncodeToString(z),
			Signature: hex.EncodeToString(sig),
		})
	}
	golden.Check(t, "testdata/xeddsa.json", vs)
}

func BenchmarkSign(b *testing.B) {
	k := newKey(b, rand.Reader)
	z := random64(b)
	msg := make([]byte, 64)
	for b.Loop() {
		Sign(k.Bytes(), msg, z)
	}
}

func BenchmarkVerify(b *testing.B) {
	k := newKey(b, rand.Reader)
	msg := make([]byte, 64)
	sig, _ := Sign(k.Bytes(), msg, random64(b))
	pub := k.PublicKey().Bytes()
	for b.Loop() {
		if !Verify(pub, msg, sig) {
			b.Fatal("verify failed")
		}
	}
}
