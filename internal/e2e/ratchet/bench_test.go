package ratchet

import "testing"

// BenchmarkEncryptDecrypt is one 100-byte message on an established chain:
// Alice encrypts, Bob decrypts (two KDF_CK steps, two AEAD passes).
func BenchmarkEncryptDecrypt(b *testing.B) {
	a, bob := newPair(b, 1, Config{})
	pt := make([]byte, 100)
	bob.newKey = generateKey
	a.newKey = generateKey
	m, _ := a.Encrypt(pt)
	if _, err := bob.Decrypt(m); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		m, err := a.Encrypt(pt)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := bob.Decrypt(m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPingPong alternates senders, so every message also costs a DH
// ratchet step (key generation and two X25519 agreements) on receipt.
func BenchmarkPingPong(b *testing.B) {
	a, bob := newPair(b, 1, Config{})
	bob.newKey = generateKey
	a.newKey = generateKey
	pt := make([]byte, 100)
	from, to := a, bob
	for b.Loop() {
		m, err := from.Encrypt(pt)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := to.Decrypt(m); err != nil {
			b.Fatal(err)
		}
		from, to = to, from
	}
}

// BenchmarkForgedWorstCase is the most work a forged message can cost a
// receiver: a new ratchet key (one X25519) and N = MaxSkip, so the
// receiver derives MaxSkip chain keys before the AEAD refuses it.
func BenchmarkForgedWorstCase(b *testing.B) {
	a, bob := newPair(b, 1, Config{})
	m, _ := a.Encrypt([]byte("x"))
	if _, err := bob.Decrypt(m); err != nil {
		b.Fatal(err)
	}
	k, err := generateKey()
	if err != nil {
		b.Fatal(err)
	}
	h := Header{DH: [32]byte(k.PublicKey().Bytes()), N: DefaultConfig.MaxSkip}
	forged := append(h.Marshal(), make([]byte, 16)...)
	for b.Loop() {
		if _, err := bob.Decrypt(forged); err == nil {
			b.Fatal("forged message decrypted")
		}
	}
}

// BenchmarkEncryptDecryptHE is BenchmarkEncryptDecrypt with header
// encryption: one more XChaCha20-Poly1305 seal and one or more header
// trial opens per message.
func BenchmarkEncryptDecryptHE(b *testing.B) {
	a, bob := newPairHE(b, 1, Config{})
	pt := make([]byte, 100)
	bob.newKey = generateKey
	a.newKey = generateKey
	m, _ := a.Encrypt(pt)
	if _, err := bob.Decrypt(m); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		m, err := a.Encrypt(pt)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := bob.Decrypt(m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPingPongHE is BenchmarkPingPong with header encryption.
func BenchmarkPingPongHE(b *testing.B) {
	a, bob := newPairHE(b, 1, Config{})
	bob.newKey = generateKey
	a.newKey = generateKey
	pt := make([]byte, 100)
	from, to := a, bob
	for b.Loop() {
		m, err := from.Encrypt(pt)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := to.Decrypt(m); err != nil {
			b.Fatal(err)
		}
		from, to = to, from
	}
}
