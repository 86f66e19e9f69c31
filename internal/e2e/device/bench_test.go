package device

import (
	"context"
	"testing"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/e2e/envelope"
)

// The client's cost per message, without the database (the chat adds one
// SQLite transaction per message, which it writes with or without
// encryption). Session state is marshalled and unmarshalled each time, as
// the chat does.

func benchPair(b *testing.B) (alice, bob *party) {
	dirs := &memDirs{keys: map[uint64]*codec.KeysUpload{}}
	t := &testing.T{}
	alice, bob = newParty(t, dirs, 1, Config{}), newParty(t, dirs, 2, Config{})
	if t.Failed() {
		b.Fatal("setup failed")
	}
	alice.store.direct, bob.store.direct = true, true
	return alice, bob
}

var body100 = make([]byte, 100)

func seal(b *testing.B, p *party, to uint64) []byte {
	var out []byte
	if err := p.store.update(func(tx Tx) error {
		var err error
		out, err = p.dev.Seal(tx, to, &envelope.Content{Type: envelope.ContentBody, Body: body100})
		return err
	}); err != nil {
		b.Fatal(err)
	}
	return out
}

func open(b *testing.B, p *party, from uint64, msg []byte) {
	if err := p.store.update(func(tx Tx) error { _, err := p.dev.Open(tx, from, msg); return err }); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkMessage: one 100-byte message sealed and opened. "chain" sends
// in one direction (a hash step per message); "turns" alternates, so
// every message also does an X25519 ratchet step on both sides.
func BenchmarkMessage(b *testing.B) {
	for _, turns := range []bool{false, true} {
		name := "chain"
		if turns {
			name = "turns"
		}
		b.Run(name, func(b *testing.B) {
			alice, bob := benchPair(b)
			t := &testing.T{}
			bob.expect(t, alice, alice.send(t, bob, "start"), "start")
			alice.expect(t, bob, bob.send(t, alice, "ok"), "ok")
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				from, to := alice, bob
				if turns && i%2 == 1 {
					from, to = bob, alice
				}
				open(b, to, from.id, seal(b, from, to.id))
			}
		})
	}
}

// BenchmarkSessionSetup: fetch a bundle, PQXDH on both sides (X25519 and
// ML-KEM-1024), the first message sealed and opened.
func BenchmarkSessionSetup(b *testing.B) {
	alice, bob := benchPair(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		alice.store.m = map[string][]byte{keyIdentity: alice.store.m[keyIdentity]}
		b.StartTimer()
		bs, err := alice.dir.FetchKeys(context.Background(), bob.id, 0)
		if err != nil {
			b.Fatal(err)
		}
		if err := alice.store.update(func(tx Tx) error { _, err := alice.dev.StartSession(tx, bob.id, &bs[0]); return err }); err != nil {
			b.Fatal(err)
		}
		open(b, bob, alice.id, seal(b, alice, bob.id))
		b.StopTimer()
		delete(bob.store.m, keySession(alice.id)) // the next one starts afresh
		b.StartTimer()
	}
}

// BenchmarkGroupMessage: one 100-byte group message sealed once and
// opened by one member (each further member costs one more open).
func BenchmarkGroupMessage(b *testing.B) {
	alice, bob := benchPair(b)
	t := &testing.T{}
	bob.expect(t, alice, alice.send(t, bob, "start"), "start")
	const g = 5
	var dist []byte
	alice.store.update(func(tx Tx) error {
		c, err := alice.dev.Distribution(tx, g)
		if err == nil {
			dist, err = alice.dev.Seal(tx, bob.id, c)
		}
		return err
	})
	open(b, bob, alice.id, dist)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var msg []byte
		if err := alice.store.update(func(tx Tx) error {
			var err error
			msg, err = alice.dev.SealGroup(tx, g, &envelope.Content{Type: envelope.ContentBody, Body: body100})
			return err
		}); err != nil {
			b.Fatal(err)
		}
		if err := bob.store.update(func(tx Tx) error { _, err := bob.dev.OpenGroup(tx, g, alice.id, msg); return err }); err != nil {
			b.Fatal(err)
		}
	}
}
