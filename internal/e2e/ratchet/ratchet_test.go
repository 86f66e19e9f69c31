package ratchet

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"testing"

	"github.com/chatd/chatd/internal/e2e/internal/golden"
)

// TestLibsignalChainKey reproduces libsignal's test_chain_key_derivation
// (rust/protocol/src/ratchet/keys.rs): the message key's cipher and MAC
// keys and the next chain key from a fixed chain key.
func TestLibsignalChainKey(t *testing.T) {
	seed := [32]byte{
		0x8a, 0xb7, 0x2d, 0x6f, 0x4c, 0xc5, 0xac, 0x0d, 0x38, 0x7e, 0xaf, 0x46, 0x33, 0x78,
		0xdd, 0xb2, 0x8e, 0xdd, 0x07, 0x38, 0x5b, 0x1c, 0xb0, 0x12, 0x50, 0xc7, 0x15, 0x98,
		0x2e, 0x7a, 0xd4, 0x8f,
	}
	wantCipher := "bf51e9d75e0e31031051f82a2491ffc084fa298b7793bd9db620056febf45217"
	wantMAC := "c6c77d6a73a354337a56435e34607dfe48e3ace14e77314dc6abc172e7a7030b"
	wantNext := "28e8f8fee54b801eef7c5cfb2f17f32c7b334485bbb70fac6ec10342a246d15d"

	next, mk := kdfCK(&seed)
	if got := hex.EncodeToString(next[:]); got != wantNext {
		t.Errorf("next chain key %s, want %s", got, wantNext)
	}
	key, _ := messageKeys(&mk)
	if got := hex.EncodeToString(key[:]); got != wantCipher {
		t.Errorf("cipher key %s, want %s", got, wantCipher)
	}
	// The MAC key is unused by the AEAD but derived by the same expansion;
	// checking it pins the whole 80-byte layout.
	okm := expand80(t, &mk)
	if got := hex.EncodeToString(okm[32:64]); got != wantMAC {
		t.Errorf("mac key %s, want %s", got, wantMAC)
	}
	if !bytes.Equal(okm[:32], key[:]) {
		t.Error("messageKeys does not take the cipher key from bytes 0..32")
	}
}

type kdfVector struct {
	RootKey   string     `json:"root_key"`
	DH        string     `json:"dh_output"`
	NewRoot   string     `json:"new_root_key"`
	ChainKey0 string     `json:"chain_key_0"`
	Steps     []kdfChain `json:"chain"`
}

type kdfChain struct {
	MessageKey string `json:"message_key"`
	AEADKey    string `json:"aead_key"`
	Nonce      string `json:"nonce"`
	NextChain  string `json:"next_chain_key"`
}

func TestKDFKnownAnswers(t *testing.T) {
	rng := mrand.NewChaCha8([32]byte{'k', 'd', 'f'})
	var v kdfVector
	var rk [32]byte
	rng.Read(rk[:])
	dh := make([]byte, 32)
	rng.Read(dh)
	newRK, ck := kdfRK(&rk, dh)
	v.RootKey, v.DH = hex.EncodeToString(rk[:]), hex.EncodeToString(dh)
	v.NewRoot, v.ChainKey0 = hex.EncodeToString(newRK[:]), hex.EncodeToString(ck[:])
	for range 5 {
		next, mk := kdfCK(&ck)
		key, nonce := messageKeys(&mk)
		v.Steps = append(v.Steps, kdfChain{
			MessageKey: hex.EncodeToString(mk[:]),
			AEADKey:    hex.EncodeToString(key[:]),
			Nonce:      hex.EncodeToString(nonce[:]),
			NextChain:  hex.EncodeToString(next[:]),
		})
		ck = next
	}
	golden.Check(t, "testdata/kdf.json", v)
}

type conversationVector struct {
	Messages   []conversationStep `json:"messages"`
	AliceState string             `json:"alice_final_state"`
	BobState   string             `json:"bob_final_state"`
}

type conversationStep struct {
	From      string `json:"from"`
	Plaintext string `json:"plaintext"`
	Message   string `json:"message"`
}

// TestConversationKnownAnswers freezes a whole exchange, with a DH ratchet
// step on every change of speaker and one out-of-order delivery, including
// both parties' final marshalled state.
func TestConversationKnownAnswers(t *testing.T) {
	a, b := newPair(t, 42, Config{})
	var v conversationVector
	send := func(from string, s *State, pt string) []byte {
		m := mustEncrypt(t, s, pt)
		v.Messages = append(v.Messages, conversationStep{from, pt, hex.EncodeToString(m)})
		return m
	}
	m1 := send("alice", a, "hello bob")
	m2 := send("alice", a, "are you there?")
	mustDecrypt(t, b, m2, "are you there?") // m1 is late
	m3 := send("bob", b, "yes")
	mustDecrypt(t, b, m1, "hello bob")
	mustDecrypt(t, a, m3, "yes")
	m4 := send("alice", a, "good")
	mustDecrypt(t, b, m4, "good")
	m5 := send("bob", b, "")
	mustDecrypt(t, a, m5, "")
	v.AliceState = hex.EncodeToString(a.Marshal())
	v.BobState = hex.EncodeToString(b.Marshal())
	golden.Check(t, "testdata/conversation.json", v)
}

func TestConversation(t *testing.T) {
	a, b := newPair(t, 1, Config{})
	if _, err := b.Encrypt([]byte("x")); !errors.Is(err, ErrNoSendingChain) {
		t.Fatalf("Bob encrypted before any message: %v", err)
	}
	if b.HasReceived() || a.HasReceived() {
		t.Fatal("HasReceived before any message")
	}
	for turn := range 20 {
		from, to := a, b
		if turn%2 == 1 {
			from, to = b, a
		}
		for i := range turn%3 + 1 {
			pt := fmt.Sprintf("turn %d message %d", turn, i)
			mustDecrypt(t, to, mustEncrypt(t, from, pt), pt)
		}
	}
	if !a.HasReceived() || !b.HasReceived() {
		t.Fatal("HasReceived false after a conversation")
	}
	if a.Skipped() != 0 || b.Skipped() != 0 {
		t.Fatal("in-order conversation stored skipped keys")
	}
}

func TestOutOfOrderAcrossChains(t *testing.T) {
	a, b := newPair(t, 2, Config{})
	var late []string
	var lateMsgs [][]byte
	for chain := range 4 {
		for i := range 3 {
			pt := fmt.Sprintf("a%d.%d", chain, i)
			m := mustEncrypt(t, a, pt)
			if i == 1 { // hold back the middle message of every chain
				late, lateMsgs = append(late, pt), append(lateMsgs, m)
				continue
			}
			mustDecrypt(t, b, m, pt)
		}
		mustDecrypt(t, a, mustEncrypt(t, b, "ack"), "ack")
	}
	if b.Skipped() != 4 {
		t.Fatalf("Bob stored %d skipped keys, want 4", b.Skipped())
	}
	for i := len(late) - 1; i >= 0; i-- {
		mustDecrypt(t, b, lateMsgs[i], late[i])
	}
	if b.Skipped() != 0 {
		t.Fatalf("%d skipped keys left after reading every message", b.Skipped())
	}
}

func TestReplayRefused(t *testing.T) {
	a, b := newPair(t, 3, Config{})
	m0 := mustEncrypt(t, a, "zero")
	m1 := mustEncrypt(t, a, "one")
	m2 := mustEncrypt(t, a, "two")
	mustDecrypt(t, b, m0, "zero")
	mustDecrypt(t, b, m2, "two")
	mustDecrypt(t, b, m1, "one") // from the skipped store
	for _, m := range [][]byte{m0, m1, m2} {
		mustFailUnchanged(t, b, m)
	}
	// Replays of a finished chain, after a ratchet step, fail too.
	mustDecrypt(t, a, mustEncrypt(t, b, "reply"), "reply")
	m3 := mustEncrypt(t, a, "three")
	mustDecrypt(t, b, m3, "three")
	for _, m := range [][]byte{m0, m2, m3} {
		mustFailUnchanged(t, b, m)
	}
	if err := mustFailUnchanged(t, b, m3); !errors.Is(err, ErrOldMessage) {
		t.Fatalf("replay in current chain: %v, want ErrOldMessage", err)
	}
}

// TestTamperingLeavesStateUnchanged flips every bit of messages that would
// take each decrypt path (current chain, new chain, skipped key) and checks
// each failure leaves the state byte-identical and the real message still
// decrypts afterwards.
func TestTamperingLeavesStateUnchanged(t *testing.T) {
	a, b := newPair(t, 4, Config{})
	m0 := mustEncrypt(t, a, "first, skipped")
	m1 := mustEncrypt(t, a, "second")
	check := func(m []byte, want string) {
		t.Helper()
		for bit := range len(m) * 8 {
			bad := bytes.Clone(m)
			bad[bit/8] ^= 1 << (bit % 8)
			mustFailUnchanged(t, b, bad)
		}
		mustFailUnchanged(t, b, m[:len(m)-1])
		mustFailUnchanged(t, b, append(bytes.Clone(m), 0))
		mustDecrypt(t, b, m, want)
	}
	check(m1, "second")         // Bob's first message: new chain path
	check(m0, "first, skipped") // skipped-key path
	m2 := mustEncrypt(t, a, "third")
	check(m2, "third") // current-chain path
}

func TestMaxSkip(t *testing.T) {
	cfg := Config{MaxSkip: 10, MaxStored: 15}
	a, b := newPair(t, 5, cfg)

	// New chain: message N may skip at most MaxSkip keys.
	var first [][]byte
	for i := range 12 {
		first = append(first, mustEncrypt(t, a, fmt.Sprint(i)))
	}
	if err := mustFailUnchanged(t, b, first[11]); !errors.Is(err, ErrTooManySkipped) {
		t.Fatalf("skip 11 on a new chain: %v", err)
	}
	mustDecrypt(t, b, first[10], "10") // skips exactly 10
	if b.Skipped() != 10 {
		t.Fatalf("stored %d keys, want 10", b.Skipped())
	}
	mustDecrypt(t, b, first[11], "11")

	// Current chain: the same bound.
	var second [][]byte
	for i := range 12 {
		second = append(second, mustEncrypt(t, a, fmt.Sprint("c", i)))
	}
	if err := mustFailUnchanged(t, b, second[11]); !errors.Is(err, ErrTooManySkipped) {
		t.Fatalf("skip 11 on the current chain: %v", err)
	}
	mustDecrypt(t, b, second[10], "c10")

	// 10 + 10 skipped keys exceed MaxStored 15: the 5 oldest went.
	if b.Skipped() != 15 {
		t.Fatalf("stored %d keys, want MaxStored 15", b.Skipped())
	}
	for i := range 5 {
		if err := mustFailUnchanged(t, b, first[i]); !errors.Is(err, ErrOldMessage) {
			t.Fatalf("evicted message %d: %v", i, err)
		}
	}
	for i := 5; i < 10; i++ {
		mustDecrypt(t, b, first[i], fmt.Sprint(i))
	}
	for i := range 10 {
		mustDecrypt(t, b, second[i], fmt.Sprint("c", i))
	}
}

// TestMaxSkipAcrossChains checks that finishing the old chain (PN - Nr) and
// skipping into the new one (N) count together against MaxSkip.
func TestMaxSkipAcrossChains(t *testing.T) {
	for _, newSkips := range []int{5, 6} {
		a, b := newPair(t, 6, Config{MaxSkip: 10})
		mustDecrypt(t, b, mustEncrypt(t, a, "hi"), "hi")
		mustDecrypt(t, a, mustEncrypt(t, b, "hi"), "hi") // Alice: chain 2
		mustDecrypt(t, b, mustEncrypt(t, a, "a2.0"), "a2.0")
		for i := range 5 {
			mustEncrypt(t, a, fmt.Sprint("lost a2.", i+1)) // 5 left in chain 2
		}
		mustDecrypt(t, a, mustEncrypt(t, b, "ratchet"), "ratchet") // Alice: chain 3
		for i := range newSkips {
			mustEncrypt(t, a, fmt.Sprint("lost a3.", i))
		}
		m := mustEncrypt(t, a, "after the gap")
		if newSkips == 5 {
			mustDecrypt(t, b, m, "after the gap") // 5 + 5 = MaxSkip
			continue
		}
		if err := mustFailUnchanged(t, b, m); !errors.Is(err, ErrTooManySkipped) {
			t.Fatalf("5 + 6 skipped across chains: %v", err)
		}
	}
}

func TestEvictedKeyIsOld(t *testing.T) {
	a, b := newPair(t, 7, Config{MaxSkip: 10, MaxStored: 3})
	var ms [][]byte
	for i := range 6 {
		ms = append(ms, mustEncrypt(t, a, fmt.Sprint(i)))
	}
	mustDecrypt(t, b, ms[5], "5") // stores 0..4, keeps 2..4
	if err := mustFailUnchanged(t, b, ms[0]); !errors.Is(err, ErrOldMessage) {
		t.Fatalf("evicted message: %v, want ErrOldMessage", err)
	}
	mustDecrypt(t, b, ms[2], "2")
}

var lowOrder = []string{
	"0000000000000000000000000000000000000000000000000000000000000000",
	"0100000000000000000000000000000000000000000000000000000000000000",
	"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
	"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
	"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
}

func TestLowOrderRatchetKeyRefused(t *testing.T) {
	a, b := newPair(t, 8, Config{})
	m := mustEncrypt(t, a, "hello")
	for _, h := range lowOrder {
		lo, _ := hex.DecodeString(h)
		bad := bytes.Clone(m)
		copy(bad, lo)
		mustFailUnchanged(t, b, bad)
		if _, err := InitAlice([32]byte{}, nil, lo, Config{}); err == nil {
			t.Errorf("InitAlice accepted low-order signed prekey %s", h)
		}
	}
	mustDecrypt(t, b, m, "hello")
}

func TestMarshalRoundTrip(t *testing.T) {
	a, b := newPair(t, 9, Config{MaxSkip: 50, MaxStored: 60})
	late := mustEncrypt(t, a, "late")
	mustDecrypt(t, b, mustEncrypt(t, a, "now"), "now")
	reload := func(s *State) *State {
		t.Helper()
		enc := s.Marshal()
		s2, err := Unmarshal(enc)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(s2.Marshal(), enc) {
			t.Fatal("Marshal(Unmarshal(x)) != x")
		}
		for n := range len(enc) {
			if _, err := Unmarshal(enc[:n]); err == nil {
				t.Fatalf("state truncated to %d bytes accepted", n)
			}
		}
		if _, err := Unmarshal(append(bytes.Clone(enc), 0)); err == nil {
			t.Fatal("state with trailing byte accepted")
		}
		return s2
	}
	a, b = reload(a), reload(b)
	if b.Skipped() != 1 || b.cfg.MaxSkip != 50 {
		t.Fatal("skipped keys or config lost in Marshal")
	}
	mustDecrypt(t, b, late, "late")
	for i := range 5 {
		a, b = reload(a), reload(b)
		mustDecrypt(t, a, mustEncrypt(t, b, fmt.Sprint("b", i)), fmt.Sprint("b", i))
		mustDecrypt(t, b, mustEncrypt(t, a, fmt.Sprint("a", i)), fmt.Sprint("a", i))
	}
}

func expand80(t *testing.T, mk *[32]byte) []byte {
	t.Helper()
	// Recompute with the public parameters rather than messageKeys, so
	// the test also pins the salt and info string.
	okm, err := hkdf.Key(sha256.New, mk[:], nil, "WhisperMessageKeys", 80)
	if err != nil {
		t.Fatal(err)
	}
	return okm
}

func TestLastCounterRefused(t *testing.T) {
	a, b := newPair(t, 12, Config{})
	mustDecrypt(t, b, mustEncrypt(t, a, "x"), "x")
	a.ns = math.MaxUint32
	if _, err := a.Encrypt([]byte("y")); !errors.Is(err, ErrCounter) {
		t.Fatalf("encrypt at the last counter: %v", err)
	}
	// A message numbered MaxUint32 is refused before any key is derived.
	h := Header{DH: [32]byte(a.dhs.PublicKey().Bytes()), PN: 0, N: math.MaxUint32}
	_, mk := kdfCK(&a.cks)
	m, err := seal(h.Marshal(), &mk, []byte("z"), a.ad)
	if err != nil {
		t.Fatal(err)
	}
	if err := mustFailUnchanged(t, b, m); !errors.Is(err, ErrCounter) {
		t.Fatalf("message N = MaxUint32: %v", err)
	}
}
