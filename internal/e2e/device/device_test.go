package device

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/e2e/envelope"
)

// memStore is a transactional map: an update works on a copy that
// replaces the map only if it succeeds.
type memStore struct {
	mu sync.Mutex
	m  map[string][]byte
	// direct skips the copy (no rollback): benchmarks measure the
	// crypto and encoding, not map copies.
	direct bool
}

type memTx struct{ m map[string][]byte }

func (t memTx) Get(k string) ([]byte, bool, error) { v, ok := t.m[k]; return v, ok, nil }
func (t memTx) Put(k string, v []byte) error       { t.m[k] = append([]byte(nil), v...); return nil }
func (t memTx) Delete(k string) error              { delete(t.m, k); return nil }
func (t memTx) Keys(p string) ([]string, error) {
	var out []string
	for k := range t.m {
		if strings.HasPrefix(k, p) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out, nil
}

func (s *memStore) update(fn func(Tx) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.direct {
		return fn(memTx{s.m})
	}
	c := maps.Clone(s.m)
	if err := fn(memTx{c}); err != nil {
		return err
	}
	s.m = c
	return nil
}

// memDir is a directory that hands out each one-time key once, then the
// last-resort key.
type memDir struct {
	owner uint64
	d     *memDirs // merged uploads per user
}

type memDirs struct {
	mu   sync.Mutex
	keys map[uint64]*codec.KeysUpload
}

func (d memDir) UploadKeys(_ context.Context, up *codec.KeysUpload) (codec.KeysCounts, error) {
	d.d.mu.Lock()
	defer d.d.mu.Unlock()
	k := d.d.keys[d.owner]
	if k == nil || up.Signed != nil {
		if k == nil || k.Identity != up.Identity {
			k = &codec.KeysUpload{}
		}
		k.Identity, k.Signed, k.LastResort = up.Identity, up.Signed, up.LastResort
		d.d.keys[d.owner] = k
	}
	k.EC = append(k.EC, up.EC...)
	k.KEM = append(k.KEM, up.KEM...)
	return codec.KeysCounts{EC: uint16(len(k.EC)), KEM: uint16(len(k.KEM))}, nil
}

func (d memDir) FetchKeys(_ context.Context, user uint64, _ uint16) ([]codec.Bundle, error) {
	d.d.mu.Lock()
	defer d.d.mu.Unlock()
	k := d.d.keys[user]
	if k == nil {
		return nil, errors.New("no keys")
	}
	b := codec.Bundle{Device: 1, Identity: k.Identity, Signed: *k.Signed, KEM: *k.LastResort}
	if len(k.EC) > 0 {
		b.EC = &k.EC[0]
		k.EC = k.EC[1:]
	}
	if len(k.KEM) > 0 {
		b.KEM = k.KEM[0]
		k.KEM = k.KEM[1:]
	}
	return []codec.Bundle{b}, nil
}

func (d memDir) CheckKeys(context.Context, codec.Digest) (bool, error) { return true, nil }

type party struct {
	id    uint64
	dev   *Device
	store *memStore
	dir   memDir
}

func newParty(t *testing.T, dirs *memDirs, id uint64, cfg Config) *party {
	t.Helper()
	p := &party{id: id, dev: New(cfg), store: &memStore{m: map[string][]byte{}}}
	p.dir = memDir{owner: id, d: dirs}
	if err := p.store.update(func(tx Tx) error { _, err := p.dev.Init(tx); return err }); err != nil {
		t.Fatal(err)
	}
	if err := p.dev.Publish(context.Background(), p.dir, p.store.update); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *party) send(t *testing.T, to *party, text string) []byte {
	t.Helper()
	var body []byte
	err := p.store.update(func(tx Tx) error {
		if err := p.dev.Ready(tx, to.id); errors.Is(err, ErrNoSession) {
			bs, err := p.dir.FetchKeys(context.Background(), to.id, 0)
			if err != nil {
				return err
			}
			if _, err := p.dev.StartSession(tx, to.id, &bs[0]); err != nil {
				return err
			}
		}
		var err error
		body, err = p.dev.Seal(tx, to.id, &envelope.Content{Type: envelope.ContentBody, Body: []byte(text)})
		return err
	})
	if err != nil {
		t.Fatalf("%d to %d: %v", p.id, to.id, err)
	}
	return body
}

func (p *party) open(from *party, body []byte) (*Opened, error) {
	var o *Opened
	err := p.store.update(func(tx Tx) error {
		var err error
		o, err = p.dev.Open(tx, from.id, body)
		return err
	})
	return o, err
}

func (p *party) expect(t *testing.T, from *party, body []byte, want string) {
	t.Helper()
	o, err := p.open(from, body)
	if err != nil {
		t.Fatalf("%d from %d: %v", p.id, from.id, err)
	}
	if string(o.Body) != want {
		t.Fatalf("%d from %d: %q, want %q", p.id, from.id, o.Body, want)
	}
}

func TestConversationAndReplays(t *testing.T) {
	dirs := &memDirs{keys: map[uint64]*codec.KeysUpload{}}
	alice, bob := newParty(t, dirs, 1, Config{EC: 3, KEM: 2}), newParty(t, dirs, 2, Config{EC: 3, KEM: 2})
	m1, m2 := alice.send(t, bob, "one"), alice.send(t, bob, "two")
	bob.expect(t, alice, m2, "two") // out of order: each prekey envelope starts the session
	bob.expect(t, alice, m1, "one")
	before := maps.Clone(bob.store.m)
	if _, err := bob.open(alice, m1); err == nil {
		t.Fatal("a replay opened")
	}
	if !maps.EqualFunc(before, bob.store.m, func(a, b []byte) bool { return string(a) == string(b) }) {
		t.Fatal("a failed open changed the store")
	}
	alice.expect(t, bob, bob.send(t, alice, "three"), "three")
	bob.expect(t, alice, alice.send(t, bob, "four"), "four")
	if _, ok := bob.store.m[keyEC(3)]; ok { // the first EC key after the two long-lived ids
		t.Fatal("used one-time prekey kept")
	}
}

// Both start a session at once: each ends with two, and they settle on
// one.
func TestSimultaneousStart(t *testing.T) {
	dirs := &memDirs{keys: map[uint64]*codec.KeysUpload{}}
	alice, bob := newParty(t, dirs, 1, Config{}), newParty(t, dirs, 2, Config{})
	a1, b1 := alice.send(t, bob, "a1"), bob.send(t, alice, "b1")
	bob.expect(t, alice, a1, "a1")
	alice.expect(t, bob, b1, "b1")
	for range 3 {
		alice.expect(t, bob, bob.send(t, alice, "b"), "b")
		bob.expect(t, alice, alice.send(t, bob, "a"), "a")
	}
}

// One-time keys run out: bundles carry the last-resort key, which is
// never deleted.
func TestLastResort(t *testing.T) {
	dirs := &memDirs{keys: map[uint64]*codec.KeysUpload{}}
	bob := newParty(t, dirs, 2, Config{EC: 1, KEM: 1})
	for i := range 4 {
		a := newParty(t, dirs, uint64(10+i), Config{})
		bob.expect(t, a, a.send(t, bob, "hi"), "hi")
	}
	if _, _, err := loadLast(memTx{bob.store.m}); err != nil {
		t.Fatal(err)
	}
}

func TestIdentityChange(t *testing.T) {
	dirs := &memDirs{keys: map[uint64]*codec.KeysUpload{}}
	alice, bob := newParty(t, dirs, 1, Config{}), newParty(t, dirs, 2, Config{})
	bob.expect(t, alice, alice.send(t, bob, "hi"), "hi")
	bob2 := newParty(t, dirs, 2, Config{}) // bob reinstalls
	o, err := alice.open(bob2, bob2.send(t, alice, "new phone"))
	if err != nil || !o.NewIdentity || string(o.Body) != "new phone" {
		t.Fatalf("%+v %v", o, err)
	}
	err = alice.store.update(func(tx Tx) error {
		_, err := alice.dev.Seal(tx, 2, &envelope.Content{Type: envelope.ContentBody, Body: []byte("x")})
		return err
	})
	if !errors.Is(err, ErrUnaccepted) {
		t.Fatalf("sealed to an unaccepted key: %v", err)
	}
	alice.store.update(func(tx Tx) error { _, err := alice.dev.AcceptIdentity(tx, 2); return err })
	bob2.expect(t, alice, alice.send(t, bob2, "ok"), "ok")
}

func TestSafetyNumberSymmetric(t *testing.T) {
	a, b := [32]byte{1}, [32]byte{2}
	x, y := SafetyNumber(1, a, 2, b), SafetyNumber(2, b, 1, a)
	if x != y || len(strings.ReplaceAll(x, " ", "")) != 60 {
		t.Fatalf("%q vs %q", x, y)
	}
	if SafetyNumber(1, a, 2, [32]byte{3}) == x {
		t.Fatal("another key, same number")
	}
}

func TestGroupRotation(t *testing.T) {
	dirs := &memDirs{keys: map[uint64]*codec.KeysUpload{}}
	ps := []*party{newParty(t, dirs, 1, Config{}), newParty(t, dirs, 2, Config{}), newParty(t, dirs, 3, Config{})}
	const g = 77
	sendGroup := func(from *party, to []*party, text string) []byte {
		var body []byte
		for _, p := range to {
			var need []uint64
			from.store.update(func(tx Tx) error { need, _ = from.dev.NeedKey(tx, g, []uint64{p.id}); return nil })
			if len(need) == 0 {
				continue
			}
			var c *envelope.Content
			from.store.update(func(tx Tx) error { c, _ = from.dev.Distribution(tx, g); return nil })
			d := from.send(t, p, "") // make sure a session exists, then seal the key
			p.expect(t, from, d, "")
			var sealed []byte
			if err := from.store.update(func(tx Tx) error {
				var err error
				if sealed, err = from.dev.Seal(tx, p.id, c); err != nil {
					return err
				}
				return from.dev.MarkHolds(tx, g, p.id)
			}); err != nil {
				t.Fatal(err)
			}
			o, err := p.open(from, sealed)
			if err != nil || o.Group != g {
				t.Fatalf("distribution: %+v %v", o, err)
			}
		}
		from.store.update(func(tx Tx) error {
			var err error
			body, err = from.dev.SealGroup(tx, g, &envelope.Content{Type: envelope.ContentBody, Body: []byte(text)})
			return err
		})
		return body
	}
	openGroup := func(p, from *party, body []byte) (string, error) {
		var pt []byte
		err := p.store.update(func(tx Tx) error {
			var err error
			pt, err = p.dev.OpenGroup(tx, g, from.id, body)
			return err
		})
		return string(pt), err
	}
	m := sendGroup(ps[0], ps[1:], "hello all")
	for _, p := range ps[1:] {
		if got, err := openGroup(p, ps[0], m); err != nil || got != "hello all" {
			t.Fatalf("%q %v", got, err)
		}
	}
	// 3 is removed: 1 rotates, and 3 cannot read what follows.
	ps[0].store.update(func(tx Tx) error { return ps[0].dev.MembersRemoved(tx, g, []uint64{3}) })
	m = sendGroup(ps[0], ps[1:2], "without 3")
	if got, err := openGroup(ps[1], ps[0], m); err != nil || got != "without 3" {
		t.Fatalf("%q %v", got, err)
	}
	if _, err := openGroup(ps[2], ps[0], m); err == nil {
		t.Fatal("a removed member read a message sent after the rotation")
	}
}
