package senderkey

import (
	"bytes"
	"testing"
)

// FuzzReceiverDecrypt: Decrypt never panics and never changes the receiver
// on failure; only the sender's real messages decrypt.
func FuzzReceiverDecrypt(f *testing.F) {
	s := newSender(groupID, 77, [32]byte{1}, bytes.Repeat([]byte{2}, 32))
	r := NewReceiver(s.Distribution(), Config{MaxForwardJump: 50})
	skipped, _ := s.Encrypt([]byte("skipped"))
	read, _ := s.Encrypt([]byte("read"))
	ahead, _ := s.Encrypt([]byte("ahead"))
	if _, err := r.Decrypt(read); err != nil {
		f.Fatal(err)
	}
	for _, m := range [][]byte{skipped, read, ahead, {}, make([]byte, Overhead)} {
		f.Add(m)
	}
	state := r.Marshal()
	f.Fuzz(func(t *testing.T, msg []byte) {
		r, err := UnmarshalReceiver(state)
		if err != nil {
			t.Fatal(err)
		}
		pt, err := r.Decrypt(msg)
		if err != nil {
			if !bytes.Equal(r.Marshal(), state) {
				t.Fatalf("failed decrypt (%v) changed the receiver", err)
			}
			return
		}
		if string(pt) != "skipped" && string(pt) != "ahead" {
			t.Fatalf("forged message decrypted to %q", pt)
		}
	})
}

// FuzzUnmarshal: the decoders never panic, and what they accept
// re-encodes to the same bytes.
func FuzzUnmarshal(f *testing.F) {
	s := newSender(groupID, 1, [32]byte{3}, bytes.Repeat([]byte{4}, 32))
	r := NewReceiver(s.Distribution(), Config{})
	f.Add(s.Distribution().Marshal())
	f.Add(r.Marshal())
	f.Add(s.Marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		if d, err := UnmarshalDistribution(b); err == nil && !bytes.Equal(d.Marshal(), b) {
			t.Fatal("distribution does not round-trip")
		}
		if r, err := UnmarshalReceiver(b); err == nil && !bytes.Equal(r.Marshal(), b) {
			t.Fatal("receiver does not round-trip")
		}
		if s, err := UnmarshalSender(b); err == nil && !bytes.Equal(s.Marshal(), b) {
			t.Fatal("sender does not round-trip")
		}
	})
}
