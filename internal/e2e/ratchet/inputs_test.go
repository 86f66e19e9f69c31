package ratchet

import (
	"crypto/ecdh"
	"encoding/hex"
	"encoding/json"
	"io"
	mrand "math/rand/v2"
	"os"
	"testing"

	"github.com/chatd/chatd/internal/e2e/internal/golden"
)

// conversationInputs are the secrets testdata/conversation.json was made
// from, which that file leaves out: the PQXDH output both sides start
// from, Bob's signed prekey, and every ratchet key either side drew, in
// the order they were drawn. With them a second implementation (web/,
// in JavaScript) replays the conversation and must produce the same
// messages and the same final states byte for byte.
type conversationInputs struct {
	SharedKey    string   `json:"shared_key"`
	AD           string   `json:"associated_data"`
	BobSPK       string   `json:"bob_signed_prekey_private"`
	RatchetKeys  []string `json:"ratchet_keys_in_draw_order"`
	MessagesSame bool     `json:"messages_match_conversation_json"`
}

// TestConversationInputs redraws newPair(42)'s randomness, recording it,
// and checks that the recorded keys rebuild conversation.json exactly.
func TestConversationInputs(t *testing.T) {
	rng := mrand.NewChaCha8([32]byte{42, 0, 0, 0, 'd', 'r'})
	var v conversationInputs
	draw := func() (*ecdh.PrivateKey, error) {
		b := make([]byte, 32)
		if _, err := io.ReadFull(rng, b); err != nil {
			return nil, err
		}
		v.RatchetKeys = append(v.RatchetKeys, hex.EncodeToString(b))
		return ecdh.X25519().NewPrivateKey(b)
	}
	var sk [32]byte
	rng.Read(sk[:])
	ad := make([]byte, 66)
	rng.Read(ad)
	spk, err := draw()
	if err != nil {
		t.Fatal(err)
	}
	v.BobSPK, v.RatchetKeys = v.RatchetKeys[0], nil
	v.SharedKey, v.AD = hex.EncodeToString(sk[:]), hex.EncodeToString(ad)
	a, err := initAlice(sk, ad, spk.PublicKey().Bytes(), Config{}, draw)
	if err != nil {
		t.Fatal(err)
	}
	b := InitBob(sk, ad, spk, Config{})
	b.newKey = draw

	// The same schedule as TestConversationKnownAnswers.
	var msgs []string
	send := func(s *State, pt string) []byte {
		m := mustEncrypt(t, s, pt)
		msgs = append(msgs, hex.EncodeToString(m))
		return m
	}
	m1 := send(a, "hello bob")
	m2 := send(a, "are you there?")
	mustDecrypt(t, b, m2, "are you there?")
	m3 := send(b, "yes")
	mustDecrypt(t, b, m1, "hello bob")
	mustDecrypt(t, a, m3, "yes")
	m4 := send(a, "good")
	mustDecrypt(t, b, m4, "good")
	m5 := send(b, "")
	mustDecrypt(t, a, m5, "")

	var frozen conversationVector
	raw, err := os.ReadFile("testdata/conversation.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &frozen); err != nil {
		t.Fatal(err)
	}
	v.MessagesSame = len(frozen.Messages) == len(msgs) &&
		frozen.AliceState == hex.EncodeToString(a.Marshal()) && frozen.BobState == hex.EncodeToString(b.Marshal())
	for i := range msgs {
		v.MessagesSame = v.MessagesSame && frozen.Messages[i].Message == msgs[i]
	}
	if !v.MessagesSame {
		t.Fatal("the recorded inputs do not rebuild testdata/conversation.json")
	}
	golden.Check(t, "testdata/conversation_inputs.json", v)
}
