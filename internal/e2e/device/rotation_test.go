package device

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/e2e/envelope"
)

// fakeClock is the injected clock: tests move it, nothing sleeps.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

// sealFrom starts a new session from bundle b (as a client that fetched it
// earlier would) and seals text.
func (p *party) sealFrom(t *testing.T, to *party, b codec.Bundle, text string) []byte {
	t.Helper()
	var body []byte
	err := p.store.update(func(tx Tx) error {
		if _, err := p.dev.StartSession(tx, to.id, &b); err != nil {
			return err
		}
		var err error
		body, err = p.dev.Seal(tx, to.id, &envelope.Content{Type: envelope.ContentBody, Body: []byte(text)})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func TestSignedPreKeyRotation(t *testing.T) {
	dirs := &memDirs{keys: map[uint64]*codec.KeysUpload{}}
	clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	cfg := Config{EC: 4, KEM: 2, SignedPreKeyPeriod: 7 * 24 * time.Hour, SignedPreKeyGrace: 30 * 24 * time.Hour, Now: clock.now}
	bob := newParty(t, dirs, 2, cfg)
	fetch := func(p *party) codec.Bundle {
		t.Helper()
		bs, err := p.dir.FetchKeys(context.Background(), bob.id, 0)
		if err != nil {
			t.Fatal(err)
		}
		return bs[0]
	}
	publish := func() {
		t.Helper()
		if err := bob.dev.Publish(context.Background(), bob.dir, bob.store.update); err != nil {
			t.Fatal(err)
		}
	}
	retired := func() []uint32 {
		t.Helper()
		var ids []uint32
		if err := bob.store.update(func(tx Tx) error {
			var err error
			ids, err = retiredSigned(tx)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return ids
	}
	alice := newParty(t, dirs, 1, Config{EC: 1, KEM: 1})
	carol := newParty(t, dirs, 3, Config{EC: 1, KEM: 1})
	dave := newParty(t, dirs, 4, Config{EC: 1, KEM: 1})

	b1 := fetch(alice)
	clock.t = clock.t.Add(6 * 24 * time.Hour)
	publish() // younger than the period: kept
	if got := fetch(alice); got.Signed.ID != b1.Signed.ID {
		t.Fatalf("signed prekey %d replaced before its period (was %d)", got.Signed.ID, b1.Signed.ID)
	}

	clock.t = clock.t.Add(2 * 24 * time.Hour) // 8 days old
	publish()
	b2 := fetch(carol)
	if b2.Signed.ID == b1.Signed.ID {
		t.Fatal("signed prekey not replaced after its period")
	}
	if got := retired(); !slices.Equal(got, []uint32{b1.Signed.ID}) {
		t.Fatalf("retired keys %v, want [%d]", got, b1.Signed.ID)
	}
	// An initiation from the old bundle still opens in the grace period,
	// and one from the new bundle too.
	bob.expect(t, alice, alice.sealFrom(t, bob, b1, "old bundle"), "old bundle")
	bob.expect(t, carol, carol.sealFrom(t, bob, b2, "new bundle"), "new bundle")

	// Past the grace period the old key is gone, and an initiation that
	// names it is refused.
	clock.t = clock.t.Add(31 * 24 * time.Hour)
	publish() // rotates again (b2 is 31 days old) and prunes b1
	if got := retired(); !slices.Equal(got, []uint32{b2.Signed.ID}) {
		t.Fatalf("retired keys %v after grace, want [%d]", got, b2.Signed.ID)
	}
	late := dave.sealFrom(t, bob, b1, "too late")
	if _, err := bob.open(dave, late); err == nil {
		t.Fatal("initiation from a signed prekey past its grace period opened")
	}
	b3 := fetch(dave)
	if b3.Signed.ID == b2.Signed.ID || b3.Signed.ID == b1.Signed.ID {
		t.Fatal("second rotation did not publish a new key")
	}
}

// TestSignedPreKeyWithoutTimestamp: a store from before rotation has no
// creation time; its key counts as due at the next Publish.
func TestSignedPreKeyWithoutTimestamp(t *testing.T) {
	dirs := &memDirs{keys: map[uint64]*codec.KeysUpload{}}
	bob := newParty(t, dirs, 2, Config{EC: 1, KEM: 1})
	before := dirs.keys[2].Signed.ID
	if err := bob.store.update(func(tx Tx) error { return tx.Delete(keySignedAt) }); err != nil {
		t.Fatal(err)
	}
	if err := bob.dev.Publish(context.Background(), bob.dir, bob.store.update); err != nil {
		t.Fatal(err)
	}
	if dirs.keys[2].Signed.ID == before {
		t.Fatal("key without a creation time not rotated")
	}
}
