package main

import (
	"bytes"
	"encoding/hex"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/history"
)

// A server rotating its Noise key announces the next one, signed by the
// key this chat pinned (KEY_ROTATE); the client checks the signature and
// moves its pin. The chat keeps the step in its local store, under
// keyMovedPrefix + the old key in hex, so that a later run given the old
// key (--server-key, CHATD_SERVER_KEY) pins the new one without anyone
// comparing keys again.
const keyMovedPrefix = "server_key_moved:"

// followPin returns the key pin moved to, following the steps this store
// saw (a few rotations at most), or pin itself.
func followPin(store *history.Store, pin []byte) ([]byte, error) {
	for range 16 { // bounded: a cycle of keys must not hang the start
		next, ok, err := store.Get(keyMovedPrefix + hex.EncodeToString(pin))
		if err != nil || !ok || len(next) != 32 || bytes.Equal(next, pin) {
			return pin, err
		}
		pin = next
	}
	return pin, nil
}

// keyMoved stores a pin's step; the client calls it once it checked the
// announcement.
func (s *session) keyMoved(old, new []byte, from time.Time) {
	if err := s.store.Put(keyMovedPrefix+hex.EncodeToString(old), new); err != nil {
		s.out.say("! could not keep the server's new key: %v", err)
	}
}

// keyRotated tells the person, calmly: nothing for them to do.
func (s *session) keyRotated(f *codec.KeyRotate) {
	s.out.say("  the server is moving to a new key %x, announced and signed by the key you pinned; this chat pins it from the next connection, nothing to compare", f.New[:])
}
