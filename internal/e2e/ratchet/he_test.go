package ratchet

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"

	"github.com/chatd/chatd/internal/e2e/internal/golden"
)

type heVector struct {
	SK         string             `json:"sk"`
	RootKey    string             `json:"root_key"`
	HKA        string             `json:"shared_hka"`
	NHKB       string             `json:"shared_nhkb"`
	Messages   []conversationStep `json:"messages"`
	AliceState string             `json:"alice_final_state"`
	BobState   string             `json:"bob_final_state"`
}

// TestHEConversationKnownAnswers freezes a whole header-encrypted
// exchange: the initial header keys, every message, an out-of-order
// delivery across a ratchet step, and both final states (version 2).
func TestHEConversationKnownAnswers(t *testing.T) {
	sk := [32]byte{'h', 'e', 's', 'k'}
	rk, hka, nhkb := headerKeys(sk)
	v := heVector{
		SK: hex.EncodeToString(sk[:]), RootKey: hex.EncodeToString(rk[:]),
		HKA: hex.EncodeToString(hka[:]), NHKB: hex.EncodeToString(nhkb[:]),
	}
	a, b := newPairHE(t, 42, Config{})
	send := func(from string, s *State, pt string) []byte {
		m := mustEncrypt(t, s, pt)
		v.Messages = append(v.Messages, conversationStep{from, pt, hex.EncodeToString(m)})
		return m
	}
	m1 := send("alice", a, "hello bob")
	m2 := send("alice", a, "are you there?")
	mustDecrypt(t, b, m2, "are you there?") // m1 is late
	m3 := send("bob", b, "yes")
	mustDecrypt(t, a, m3, "yes")
	m4 := send("alice", a, "good")
	mustDecrypt(t, b, m4, "good")
	mustDecrypt(t, b, m1, "hello bob") // from the previous chain's header key
	m5 := send("bob", b, "")
	mustDecrypt(t, a, m5, "")
	if a.Skipped() != 0 || b.Skipped() != 0 {
		t.Fatal("skipped keys left")
	}
	v.AliceState = hex.EncodeToString(a.Marshal())
	v.BobState = hex.EncodeToString(b.Marshal())
	golden.Check(t, "testdata/conversation_he.json", v)
}

// TestHEHidesHeader checks no header field travels in clear: neither the
// sender's ratchet public key nor a readable counter.
func TestHEHidesHeader(t *testing.T) {
	a, b := newPairHE(t, 1, Config{})
	m0 := mustEncrypt(t, a, "x")
	m1 := mustEncrypt(t, a, "x")
	if len(m0) != HEOverhead+1 {
		t.Fatalf("message is %d bytes, want %d", len(m0), HEOverhead+1)
	}
	if bytes.Contains(m0, a.dhs.PublicKey().Bytes()[:8]) {
		t.Fatal("ratchet key in clear")
	}
	if bytes.Equal(m0[:HeaderNonceSize], m1[:HeaderNonceSize]) {
		t.Fatal("two messages share a header nonce")
	}
	mustDecrypt(t, b, m1, "x")
	mustDecrypt(t, b, m0, "x")
}

func TestHEConversation(t *testing.T) {
	a, b := newPairHE(t, 1, Config{})
	if !a.HeaderEncrypted() || !b.HeaderEncrypted() {
		t.Fatal("HE session reports plain")
	}
	if _, err := b.Encrypt([]byte("x")); !errors.Is(err, ErrNoSendingChain) {
		t.Fatalf("Bob encrypted before any message: %v", err)
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
	if a.Skipped() != 0 || b.Skipped() != 0 {
		t.Fatal("in-order conversation stored skipped keys")
	}
}

// TestHEVariantsDoNotMix: a plain message cannot open an HE session nor the
// reverse, and the failure changes nothing.
func TestHEVariantsDoNotMix(t *testing.T) {
	pa, pb := newPair(t, 3, Config{})
	ha, hb := newPairHE(t, 3, Config{}) // same secret, keys and AD
	mustFailUnchanged(t, hb, mustEncrypt(t, pa, "plain"))
	mustFailUnchanged(t, pb, mustEncrypt(t, ha, "he"))
}

func TestHEReplayRefused(t *testing.T) {
	a, b := newPairHE(t, 3, Config{})
	m0 := mustEncrypt(t, a, "zero")
	m1 := mustEncrypt(t, a, "one")
	m2 := mustEncrypt(t, a, "two")
	mustDecrypt(t, b, m0, "zero")
	mustDecrypt(t, b, m2, "two")
	mustDecrypt(t, b, m1, "one")
	for _, m := range [][]byte{m0, m1, m2} {
		mustFailUnchanged(t, b, m)
	}
	mustDecrypt(t, a, mustEncrypt(t, b, "reply"), "reply")
	m3 := mustEncrypt(t, a, "three")
	mustDecrypt(t, b, m3, "three")
	for _, m := range [][]byte{m0, m2} {
		mustFailUnchanged(t, b, m)
	}
	if err := mustFailUnchanged(t, b, m3); !errors.Is(err, ErrOldMessage) {
		t.Fatalf("replay in current chain: %v, want ErrOldMessage", err)
	}
}

func TestHETamperingLeavesStateUnchanged(t *testing.T) {
	a, b := newPairHE(t, 4, Config{})
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
		mustFailUnchanged(t, b, m[:HEOverhead-1])
		mustFailUnchanged(t, b, append(bytes.Clone(m), 0))
		mustDecrypt(t, b, m, want)
	}
	check(m1, "second")         // new chain
	check(m0, "first, skipped") // skipped key
	check(mustEncrypt(t, a, "third"), "third")
}

func TestHEMaxSkip(t *testing.T) {
	cfg := Config{MaxSkip: 10, MaxStored: 15}
	a, b := newPairHE(t, 5, cfg)
	var first [][]byte
	for i := range 12 {
		first = append(first, mustEncrypt(t, a, fmt.Sprint(i)))
	}
	if err := mustFailUnchanged(t, b, first[11]); !errors.Is(err, ErrTooManySkipped) {
		t.Fatalf("skip 11 on a new chain: %v", err)
	}
	mustDecrypt(t, b, first[10], "10")
	mustDecrypt(t, b, first[11], "11")
	var second [][]byte
	for i := range 12 {
		second = append(second, mustEncrypt(t, a, fmt.Sprint("c", i)))
	}
	if err := mustFailUnchanged(t, b, second[11]); !errors.Is(err, ErrTooManySkipped) {
		t.Fatalf("skip 11 on the current chain: %v", err)
	}
	mustDecrypt(t, b, second[10], "c10")
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

	// Across a ratchet step, the rest of the old chain (c11, unread: 1
	// key) and N in the new chain count together: 1 + 10 > MaxSkip.
	mustDecrypt(t, a, mustEncrypt(t, b, "ratchet"), "ratchet")
	for i := range 10 {
		mustEncrypt(t, a, fmt.Sprint("lost ", i))
	}
	if err := mustFailUnchanged(t, b, mustEncrypt(t, a, "after the gap")); !errors.Is(err, ErrTooManySkipped) {
		t.Fatalf("1 + 10 skipped across chains: %v", err)
	}
}

func TestHEMarshalRoundTrip(t *testing.T) {
	a, b := newPairHE(t, 9, Config{MaxSkip: 50, MaxStored: 60})
	late := mustEncrypt(t, a, "late")
	mustDecrypt(t, b, mustEncrypt(t, a, "now"), "now")
	reload := func(s *State) *State {
		t.Helper()
		enc := s.Marshal()
		if enc[0] != stateVersionHE {
			t.Fatalf("HE state written as version %d", enc[0])
		}
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
	mustDecrypt(t, b, late, "late")
	for i := range 5 {
		a, b = reload(a), reload(b)
		mustDecrypt(t, a, mustEncrypt(t, b, fmt.Sprint("b", i)), fmt.Sprint("b", i))
		mustDecrypt(t, b, mustEncrypt(t, a, fmt.Sprint("a", i)), fmt.Sprint("a", i))
	}
	// A plain state still writes and reads version 1.
	p, _ := newPair(t, 9, Config{})
	if p.Marshal()[0] != stateVersion {
		t.Fatal("plain state not version 1")
	}
}

// FuzzDecryptHE is FuzzDecrypt for a header-encrypted session.
func FuzzDecryptHE(f *testing.F) {
	a, b := newPairHE(f, 11, Config{MaxSkip: 100, MaxStored: 200})
	late := mustEncrypt(f, a, "late")
	mustDecrypt(f, b, mustEncrypt(f, a, "on time"), "on time")
	reply := mustEncrypt(f, b, "reply")
	mustDecrypt(f, a, reply, "reply")
	next := mustEncrypt(f, a, "new chain")
	same := mustEncrypt(f, b, "same chain")
	for _, m := range [][]byte{late, next, same, reply, {}, make([]byte, HEOverhead)} {
		f.Add(m)
	}
	state := b.Marshal()
	f.Fuzz(func(t *testing.T, msg []byte) {
		s, err := Unmarshal(state)
		if err != nil {
			t.Fatal(err)
		}
		pt, err := s.Decrypt(msg)
		if err != nil {
			if !bytes.Equal(s.Marshal(), state) {
				t.Fatalf("failed decrypt (%v) changed the state", err)
			}
			return
		}
		switch string(pt) {
		case "late", "new chain":
		default:
			t.Fatalf("forged message decrypted to %q", pt)
		}
	})
}
