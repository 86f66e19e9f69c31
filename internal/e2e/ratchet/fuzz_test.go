package ratchet

import (
	"bytes"
	"testing"
)

// FuzzDecrypt feeds arbitrary messages to a mid-conversation state (with
// stored skipped keys, so every decrypt path is reachable). Decrypt must
// never panic, and when it fails the state must be byte-identical.
func FuzzDecrypt(f *testing.F) {
	a, b := newPair(f, 11, Config{MaxSkip: 100, MaxStored: 200})
	late := mustEncrypt(f, a, "late")
	mustDecrypt(f, b, mustEncrypt(f, a, "on time"), "on time")
	reply := mustEncrypt(f, b, "reply")
	mustDecrypt(f, a, reply, "reply")
	next := mustEncrypt(f, a, "new chain")
	same := mustEncrypt(f, b, "same chain")
	for _, m := range [][]byte{late, next, same, reply, {}, make([]byte, Overhead)} {
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
		// Only the real messages may decrypt.
		switch string(pt) {
		case "late", "new chain":
		default:
			t.Fatalf("forged message decrypted to %q", pt)
		}
	})
}
