package device

import (
	"crypto/sha512"
	"encoding/binary"
	"fmt"
	"strings"
)

// Safety numbers, as Signal computes them (libsignal's
// NumericFingerprintGenerator, version 0, 5,200 iterations): each side's
// half is 30 digits from its identity key and stable identifier, and
// the number is the two halves, the smaller first, so both people see
// the same 60 digits. chatd's identifier is the user id as u64
// big-endian; the key is the 32-byte X25519 identity key prefixed with
// 0x05, as libsignal encodes it.
const fingerprintIterations = 5200

func fingerprintHalf(key [32]byte, user uint64) string {
	pub := append([]byte{0x05}, key[:]...)
	// The first round hashes version u16 | key | identifier, each
	// later one the previous hash and the key.
	sum := append(append([]byte{0, 0}, pub...), binary.BigEndian.AppendUint64(nil, user)...)
	h := sha512.New()
	for range fingerprintIterations {
		h.Reset()
		h.Write(sum)
		h.Write(pub)
		sum = h.Sum(nil)
	}
	var b strings.Builder
	for i := 0; i < 30; i += 5 {
		chunk := uint64(sum[i])<<32 | uint64(sum[i+1])<<24 | uint64(sum[i+2])<<16 | uint64(sum[i+3])<<8 | uint64(sum[i+4])
		fmt.Fprintf(&b, "%05d", chunk%100000)
	}
	return b.String()
}

// SafetyNumber is the 60-digit number two users compare (in person, or
// over another channel) to check that no one is in the middle: self's
// identity key with user self, and peer's key with user peer. It is
// printed as twelve groups of five digits.
func SafetyNumber(self uint64, selfKey [32]byte, peer uint64, peerKey [32]byte) string {
	a, b := fingerprintHalf(selfKey, self), fingerprintHalf(peerKey, peer)
	if b < a {
		a, b = b, a
	}
	n := a + b
	var g []string
	for i := 0; i < len(n); i += 5 {
		g = append(g, n[i:i+5])
	}
	return strings.Join(g, " ")
}
