package senderkey

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"testing"

	"github.com/chatd/chatd/internal/e2e/internal/golden"
)

var groupID = [DistributionIDSize]byte{'g', 'r', 'o', 'u', 'p'}

func newGroupSender(t *testing.T) *Sender {
	t.Helper()
	s, err := NewSender(groupID)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// receiverFor gives a member the sender's chain as a Distribution that went
// over the wire.
func receiverFor(t *testing.T, s *Sender, cfg Config) *Receiver {
	t.Helper()
	d, err := UnmarshalDistribution(s.Distribution().Marshal())
	if err != nil {
		t.Fatal(err)
	}
	return NewReceiver(d, cfg)
}

func encrypt(t *testing.T, s *Sender, pt string) []byte {
	t.Helper()
	m, err := s.Encrypt([]byte(pt))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func decrypt(t *testing.T, r *Receiver, m []byte, want string) {
	t.Helper()
	pt, err := r.Decrypt(m)
	if err != nil {
		t.Fatalf("decrypt %q: %v", want, err)
	}
	if string(pt) != want {
		t.Fatalf("got %q, want %q", pt, want)
	}
}

func failUnchanged(t *testing.T, r *Receiver, m []byte) error {
	t.Helper()
	before := r.Marshal()
	if pt, err := r.Decrypt(m); err == nil {
		t.Fatalf("decrypt succeeded (%q), want failure", pt)
	} else {
		if !bytes.Equal(r.Marshal(), before) {
			t.Fatalf("failed decrypt (%v) changed the receiver", err)
		}
		return err
	}
	return nil
}

func TestGroupFanOut(t *testing.T) {
	s := newGroupSender(t)
	members := []*Receiver{receiverFor(t, s, Config{}), receiverFor(t, s, Config{}), receiverFor(t, s, Config{})}
	for i := range 10 {
		m := encrypt(t, s, fmt.Sprint("msg ", i))
		for _, r := range members { // one ciphertext for everyone
			decrypt(t, r, m, fmt.Sprint("msg ", i))
		}
	}
	// A member who joins late reads from the current iteration only.
	late := receiverFor(t, s, Config{})
	m := encrypt(t, s, "welcome")
	decrypt(t, late, m, "welcome")
}

func TestOutOfOrderAndReplay(t *testing.T) {
	s := newGroupSender(t)
	r := receiverFor(t, s, Config{})
	var ms [][]byte
	for i := range 5 {
		ms = append(ms, encrypt(t, s, fmt.Sprint(i)))
	}
	for _, i := range []int{3, 0, 4, 1, 2} {
		decrypt(t, r, ms[i], fmt.Sprint(i))
	}
	for _, m := range ms {
		if err := failUnchanged(t, r, m); !errors.Is(err, ErrOldMessage) {
			t.Fatalf("replay: %v, want ErrOldMessage", err)
		}
	}
}

func TestForgeryAndTamperingRefused(t *testing.T) {
	s := newGroupSender(t)
	r := receiverFor(t, s, Config{})
	m := encrypt(t, s, "genuine")
	for bit := range len(m) * 8 {
		bad := bytes.Clone(m)
		bad[bit/8] ^= 1 << (bit % 8)
		failUnchanged(t, r, bad)
	}
	// Another member who knows the chain key (every member does) but not
	// the signing key cannot forge a message from this sender.
	forger := newSender(groupID, s.chainID, s.chainKey, bytes.Repeat([]byte{7}, 32))
	forger.iteration = s.iteration
	if err := failUnchanged(t, r, encrypt(t, forger, "forged")); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("forged message: %v, want ErrBadSignature", err)
	}
	decrypt(t, r, m, "genuine")
}

func TestForwardJumpBound(t *testing.T) {
	s := newGroupSender(t)
	r := receiverFor(t, s, Config{MaxForwardJump: 10, MaxSkipped: 4})
	var ms [][]byte
	for i := range 12 {
		ms = append(ms, encrypt(t, s, fmt.Sprint(i)))
	}
	if err := failUnchanged(t, r, ms[11]); !errors.Is(err, ErrTooFarAhead) {
		t.Fatalf("jump of 11: %v", err)
	}
	decrypt(t, r, ms[10], "10")
	// Only the newest 4 skipped keys (6..9) are kept.
	if err := failUnchanged(t, r, ms[5]); !errors.Is(err, ErrOldMessage) {
		t.Fatalf("evicted key: %v", err)
	}
	decrypt(t, r, ms[6], "6")
}

func TestRotation(t *testing.T) {
	s := newGroupSender(t)
	r := receiverFor(t, s, Config{MaxChains: 2})
	before := encrypt(t, s, "before rotation")
	oldChain := s.chainID
	if err := s.Rotate(); err != nil {
		t.Fatal(err)
	}
	if s.chainID == oldChain || s.iteration != 0 {
		t.Fatal("rotation kept the chain")
	}
	dist := s.Distribution() // distributed before the first message on it
	after := encrypt(t, s, "after rotation")
	if err := failUnchanged(t, r, after); !errors.Is(err, ErrNoState) {
		t.Fatalf("message on an undistributed chain: %v", err)
	}
	if err := r.Process(dist); err != nil {
		t.Fatal(err)
	}
	decrypt(t, r, after, "after rotation")
	decrypt(t, r, before, "before rotation") // old chain still held
	// Reprocessing is harmless; a known chain ID with another key is not.
	if err := r.Process(s.Distribution()); err != nil {
		t.Fatal(err)
	}
	evil := s.Distribution()
	evil.SigningKey[0] ^= 1
	if err := r.Process(evil); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("redistribution with another signing key: %v", err)
	}
	// MaxChains 2: a third chain pushes out the first.
	old := encrypt(t, s, "second chain")
	if err := s.Rotate(); err != nil {
		t.Fatal(err)
	}
	if err := r.Process(s.Distribution()); err != nil {
		t.Fatal(err)
	}
	decrypt(t, r, old, "second chain")
	if err := failUnchanged(t, r, before); !errors.Is(err, ErrNoState) {
		t.Fatalf("message on a dropped chain: %v", err)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	s := newGroupSender(t)
	r := receiverFor(t, s, Config{})
	skippedMsg := encrypt(t, s, "skipped")
	decrypt(t, r, encrypt(t, s, "read"), "read")

	s2, err := UnmarshalSender(s.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	rb := r.Marshal()
	r2, err := UnmarshalReceiver(rb)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r2.Marshal(), rb) || !bytes.Equal(s2.Marshal(), s.Marshal()) {
		t.Fatal("Marshal(Unmarshal(x)) != x")
	}
	for n := range len(rb) {
		if _, err := UnmarshalReceiver(rb[:n]); err == nil {
			t.Fatalf("receiver truncated to %d bytes accepted", n)
		}
	}
	decrypt(t, r2, skippedMsg, "skipped")
	decrypt(t, r2, encrypt(t, s2, "after reload"), "after reload")
	d := s.Distribution().Marshal()
	if _, err := UnmarshalDistribution(d[:len(d)-1]); err == nil {
		t.Fatal("truncated distribution accepted")
	}
}

type senderKeyVector struct {
	DistributionID string   `json:"distribution_id"`
	ChainID        uint32   `json:"chain_id"`
	ChainKey       string   `json:"chain_key"`
	SigningSeed    string   `json:"signing_seed"`
	Distribution   string   `json:"distribution"`
	Plaintexts     []string `json:"plaintexts"`
	Messages       []string `json:"messages"`
}

// TestKnownAnswers freezes a sender chain's distribution and messages;
// Ed25519 signatures are deterministic, so the whole output is too.
func TestKnownAnswers(t *testing.T) {
	rng := mrand.NewChaCha8([32]byte{'s', 'k'})
	var id [DistributionIDSize]byte
	var ck [32]byte
	seed := make([]byte, 32)
	rng.Read(id[:])
	rng.Read(ck[:])
	rng.Read(seed)
	s := newSender(id, 0x01020304, ck, seed)
	v := senderKeyVector{
		DistributionID: hex.EncodeToString(id[:]),
		ChainID:        0x01020304,
		ChainKey:       hex.EncodeToString(ck[:]),
		SigningSeed:    hex.EncodeToString(seed),
		Distribution:   hex.EncodeToString(s.Distribution().Marshal()),
	}
	r := NewReceiver(s.Distribution(), Config{})
	for _, pt := range []string{"", "hello group", "third"} {
		m := encrypt(t, s, pt)
		decrypt(t, r, m, pt)
		v.Plaintexts = append(v.Plaintexts, pt)
		v.Messages = append(v.Messages, hex.EncodeToString(m))
	}
	golden.Check(t, "testdata/senderkey.json", v)
}

func BenchmarkEncryptDecrypt(b *testing.B) {
	s, _ := NewSender(groupID)
	r := NewReceiver(s.Distribution(), Config{})
	pt := make([]byte, 100)
	for b.Loop() {
		m, _ := s.Encrypt(pt)
		if _, err := r.Decrypt(m); err != nil {
			b.Fatal(err)
		}
	}
}

func TestLastIterationRefused(t *testing.T) {
	s := newGroupSender(t)
	r := receiverFor(t, s, Config{})
	s.iteration = math.MaxUint32
	if _, err := s.Encrypt([]byte("x")); !errors.Is(err, ErrCounter) {
		t.Fatalf("encrypt at the last iteration: %v", err)
	}
	// Even the chain's owner cannot make a receiver accept it.
	h := header{distributionID: s.distributionID, chainID: s.chainID, iteration: math.MaxUint32}
	hb := h.marshal()
	msg, err := seal(&s.chainKey, []byte("x"), hb, hb)
	if err != nil {
		t.Fatal(err)
	}
	msg = append(msg, ed25519.Sign(s.signing, msg)...)
	if err := failUnchanged(t, r, msg); !errors.Is(err, ErrCounter) {
		t.Fatalf("message at iteration MaxUint32: %v", err)
	}
}
