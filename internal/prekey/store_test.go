package prekey

import (
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"sync"
	"testing"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/e2e/pqxdh"
	"github.com/chatd/chatd/internal/store"
	"github.com/cockroachdb/pebble/v2"
)

func open(t *testing.T, cfg Config) (*Store, *pebble.DB) {
	t.Helper()
	db, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := New(db, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s, db
}

// device generates keys and uploads ec and kem one-time prekeys for
// (user, 1), long-lived keys included.
func device(t *testing.T, s *Store, user uint64, ec, kem int) *client.DeviceKeys {
	t.Helper()
	d, err := client.NewDeviceKeys()
	if err != nil {
		t.Fatal(err)
	}
	upload(t, s, user, d, true, ec, kem)
	return d
}

func upload(t *testing.T, s *Store, user uint64, d *client.DeviceKeys, longLived bool, ec, kem int) Uploaded {
	t.Helper()
	ups, err := d.Uploads(longLived, ec, kem)
	if err != nil {
		t.Fatal(err)
	}
	var res Uploaded
	for i, up := range ups {
		r, err := s.Upload(user, 1, up)
		if err != nil {
			t.Fatalf("upload frame %d of %d: %v", i+1, len(ups), err)
		}
		res.Counts, res.Changed = r.Counts, res.Changed || r.Changed
	}
	return res
}

func TestUploadCountCheck(t *testing.T) {
	s, _ := open(t, Config{})
	d, err := client.NewDeviceKeys()
	if err != nil {
		t.Fatal(err)
	}
	ups, err := d.Uploads(false, 5, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Upload(7, 1, ups[0]); !errors.Is(err, ErrInvalid) {
		t.Fatalf("first upload without long-lived keys: %v, want ErrInvalid", err)
	}
	if _, err := s.Count(7, 1); !errors.Is(err, ErrNoKeys) {
		t.Fatalf("count before any upload: %v", err)
	}
	r := upload(t, s, 7, d, true, 350, 40) // 2 frames of EC, 2 of KEM
	if r.Counts != (Counts{EC: 350, KEM: 40}) || r.Changed {
		t.Fatalf("after upload: %+v", r)
	}
	if c, err := s.Count(7, 1); err != nil || c != r.Counts {
		t.Fatalf("Count = %+v, %v", c, err)
	}
	// Resending the same frame (a lost answer) adds nothing.
	again := &codec.KeysUpload{Identity: d.IdentityKey(), EC: ups[0].EC}
	if _, err := s.Upload(7, 1, again); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Upload(7, 1, again); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.Count(7, 1); c.EC != 355 {
		t.Fatalf("after adding 5 twice: %d EC, want 355", c.EC)
	}
	if ok, err := s.Check(7, 1, d.Digest()); err != nil || !ok {
		t.Fatalf("Check(own digest) = %v, %v", ok, err)
	}
	if ok, _ := s.Check(7, 1, codec.Digest{1}); ok {
		t.Fatal("Check(other digest) matched")
	}
	if ok, _ := s.Check(8, 1, d.Digest()); ok {
		t.Fatal("Check for a user without keys matched")
	}
	// Replace drops the stored one-time EC keys first.
	ups, _ = d.Uploads(false, 3, 0)
	ups[0].Flags = codec.UploadReplaceEC
	if r, err := s.Upload(7, 1, ups[0]); err != nil || r.Counts != (Counts{EC: 3, KEM: 40}) {
		t.Fatalf("replace: %+v, %v", r, err)
	}
}

func TestUploadRefusesBadKeys(t *testing.T) {
	s, _ := open(t, Config{MaxEC: 10, MaxKEM: 2})
	d := device(t, s, 1, 2, 1)
	before, _ := s.Count(1, 1)
	fresh := func(ec, kem int) *codec.KeysUpload {
		ups, err := d.Uploads(true, ec, kem)
		if err != nil {
			t.Fatal(err)
		}
		return ups[0]
	}
	other, err := client.NewDeviceKeys()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		mut  func(u *codec.KeysUpload)
		want error
	}{
		{"signed prekey signature", func(u *codec.KeysUpload) { u.Signed.Sig[5] ^= 1 }, ErrBadSignature},
		{"last-resort signature", func(u *codec.KeysUpload) { u.LastResort.Sig[0] ^= 1 }, ErrBadSignature},
		{"KEM prekey signature", func(u *codec.KeysUpload) { u.KEM[0].Sig[63] ^= 0x40 }, ErrBadSignature},
		{"signed by another identity", func(u *codec.KeysUpload) { u.Identity = other.IdentityKey() }, ErrBadSignature},
		{"KEM key not ML-KEM", func(u *codec.KeysUpload) { u.KEM[0].Key = bytesOf(0xff, codec.KEMKeyLen) }, ErrInvalid},
		{"identity of small order", func(u *codec.KeysUpload) { u.Identity = codec.ECKey{} }, ErrInvalid},
		{"EC prekey of small order", func(u *codec.KeysUpload) { u.EC[0].Key = codec.ECKey{1} }, ErrInvalid},
		{"repeated EC id", func(u *codec.KeysUpload) { u.EC[1].ID = u.EC[0].ID }, ErrInvalid},
		{"EC id 0", func(u *codec.KeysUpload) { u.EC[0].ID = 0 }, ErrInvalid},
		{"unknown flags", func(u *codec.KeysUpload) { u.Flags = 0x80 }, ErrInvalid},
		{"too many EC", func(u *codec.KeysUpload) { u.EC = append(u.EC, fresh(9, 0).EC...) }, ErrFull},
	}
	for _, tc := range cases {
		u := fresh(2, 1)
		tc.mut(u)
		if _, err := s.Upload(1, 1, u); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if c, _ := s.Count(1, 1); c != before {
		t.Fatalf("a refused upload changed the counts: %+v, was %+v", c, before)
	}
	if ok, _ := s.Check(1, 1, d.Digest()); !ok {
		t.Fatal("a refused upload changed the long-lived keys")
	}
}

func bytesOf(b byte, n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = b
	}
	return p
}

func TestFetchTakesInOrderThenLastResort(t *testing.T) {
	s, _ := open(t, Config{LowEC: 2, LowKEM: 1})
	d := device(t, s, 5, 3, 2)
	var lowSeen []Counts
	var kemIDs []uint32
	for i := 0; i < 5; i++ {
		f, err := s.Fetch(9, 5, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(f.Bundles) != 1 {
			t.Fatalf("%d bundles", len(f.Bundles))
		}
		b := f.Bundles[0]
		if err := client.VerifyBundle(&b); err != nil {
			t.Fatal(err)
		}
		if b.Identity != d.IdentityKey() || b.Device != 1 || b.Signed.ID != d.SignedID {
			t.Fatalf("bundle %d: wrong long-lived keys", i)
		}
		if (b.EC != nil) != (i < 3) {
			t.Fatalf("fetch %d: EC prekey present = %v", i, b.EC != nil)
		}
		if b.EC != nil && d.EC[b.EC.ID] == nil {
			t.Fatalf("fetch %d: EC prekey %d was never generated", i, b.EC.ID)
		}
		kemIDs = append(kemIDs, b.KEM.ID)
		for _, l := range f.Low {
			lowSeen = append(lowSeen, l.Counts)
		}
	}
	// Two one-time KEM keys, then the last-resort key every time.
	if kemIDs[0] == kemIDs[1] || d.KEM[kemIDs[0]] == nil || d.KEM[kemIDs[1]] == nil {
		t.Fatalf("KEM ids %v: the first two are not distinct one-time keys", kemIDs)
	}
	for _, id := range kemIDs[2:] {
		if id != d.LastID {
			t.Fatalf("KEM ids %v: want the last-resort key %d after two", kemIDs, d.LastID)
		}
	}
	// Below threshold once: EC 1 < 2 with KEM 1, reported once.
	if len(lowSeen) != 1 || lowSeen[0] != (Counts{EC: 1, KEM: 0}) {
		t.Fatalf("low reports %+v, want one at {1 0}", lowSeen)
	}
	if _, err := s.Fetch(9, 6, 0); !errors.Is(err, ErrNoKeys) {
		t.Fatalf("fetch of a user without keys: %v", err)
	}
	if _, err := s.Fetch(9, 5, 2); !errors.Is(err, ErrNoKeys) {
		t.Fatalf("fetch of a device without keys: %v", err)
	}
}

// TestConcurrentFetchExactlyOnce races fetchers against one user's keys:
// every one-time key is handed out exactly once.
func TestConcurrentFetchExactlyOnce(t *testing.T) {
	s, _ := open(t, Config{})
	const ec, kem, fetchers, each = 60, 12, 8, 10
	device(t, s, 1, ec, kem)
	var mu sync.Mutex
	gotEC, gotKEM := map[uint32]int{}, map[uint32]int{}
	var wg sync.WaitGroup
	for f := range fetchers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				r, err := s.Fetch(uint64(100+f), 1, 1)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if b := r.Bundles[0]; b.EC != nil {
					gotEC[b.EC.ID]++
				}
				gotKEM[r.Bundles[0].KEM.ID]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(gotEC) != ec {
		t.Fatalf("%d distinct EC prekeys handed out, want %d", len(gotEC), ec)
	}
	for id, n := range gotEC {
		if n != 1 {
			t.Fatalf("EC prekey %d handed out %d times", id, n)
		}
	}
	if len(gotKEM) != kem+1 {
		t.Fatalf("%d distinct KEM keys, want %d one-time + last resort", len(gotKEM), kem)
	}
	lastResort := 0
	for _, n := range gotKEM {
		if n > 1 {
			lastResort += n
		}
	}
	if lastResort != fetchers*each-kem {
		t.Fatalf("last resort handed out %d times, want %d", lastResort, fetchers*each-kem)
	}
	if c, _ := s.Count(1, 1); c != (Counts{}) {
		t.Fatalf("counts after draining: %+v", c)
	}
}

func TestIdentityChangeFetchersNotices(t *testing.T) {
	s, _ := open(t, Config{MaxFetchers: 3})
	device(t, s, 1, 5, 2)
	for f := uint64(10); f < 15; f++ {
		if _, err := s.Fetch(f, 1, 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Fetch(1, 1, 0); err != nil { // own fetch: not a fetcher
		t.Fatal(err)
	}
	fs, err := s.Fetchers(1)
	if err != nil {
		t.Fatal(err)
	}
	// Bounded at 3; the least recent go first. Fetches within one
	// millisecond tie, so only the bound and membership are certain.
	if len(fs) != 3 {
		t.Fatalf("fetchers %v, want 3", fs)
	}
	for _, f := range fs {
		if f < 10 || f > 14 {
			t.Fatalf("fetchers %v", fs)
		}
	}

	// A new identity without long-lived keys is refused; with them it
	// drops the old one-time keys.
	n, err := client.NewDeviceKeys()
	if err != nil {
		t.Fatal(err)
	}
	ups, _ := n.Uploads(false, 1, 0)
	if _, err := s.Upload(1, 1, ups[0]); !errors.Is(err, ErrInvalid) {
		t.Fatalf("new identity without long-lived keys: %v", err)
	}
	r := upload(t, s, 1, n, true, 2, 0)
	if !r.Changed || r.Counts != (Counts{EC: 2}) {
		t.Fatalf("identity change: %+v", r)
	}
	if r := upload(t, s, 1, n, false, 1, 0); r.Changed {
		t.Fatal("same identity reported as changed")
	}

	if err := s.AddNotices(fs, 1, 1); err != nil {
		t.Fatal(err)
	}
	ns, err := s.Notices(fs[0])
	if err != nil || len(ns) != 1 || ns[0] != (codec.IdentityChanged{User: 1, Device: 1}) {
		t.Fatalf("notices %+v, %v", ns, err)
	}
	if err := s.DropNotices(fs[0], ns); err != nil {
		t.Fatal(err)
	}
	if ns, _ := s.Notices(fs[0]); len(ns) != 0 {
		t.Fatalf("notices after drop: %+v", ns)
	}
	if ns, _ := s.Notices(fs[1]); len(ns) != 1 {
		t.Fatalf("another user's notices: %+v", ns)
	}
}

func TestDelete(t *testing.T) {
	s, db := open(t, Config{})
	device(t, s, 1, 5, 2)
	device(t, s, 2, 5, 2)
	s.Fetch(2, 1, 0)
	s.AddNotices([]uint64{1}, 2, 1)
	if err := s.Delete(1); err != nil {
		t.Fatal(err)
	}
	if n, err := store.Count(db, userPrefix(1), -1); err != nil || n != 0 {
		t.Fatalf("%d keys left for the deleted user (%v)", n, err)
	}
	if _, err := s.Fetch(2, 1, 0); !errors.Is(err, ErrNoKeys) {
		t.Fatalf("fetch after delete: %v", err)
	}
	if c, err := s.Count(2, 1); err != nil || c.EC != 5 {
		t.Fatalf("the other user's keys: %+v, %v", c, err)
	}
}

// TestUploadTakesPQXDHKeys: keys signed by internal/e2e/pqxdh (the client
// side of the protocol) upload as they are: the server checks the same
// signed bytes.
func TestUploadTakesPQXDHKeys(t *testing.T) {
	s, _ := open(t, Config{})
	identity, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, spk, err := pqxdh.NewSignedPreKey(identity, 1)
	if err != nil {
		t.Fatal(err)
	}
	_, lr, err := pqxdh.NewKEMPreKey(identity, 2, true)
	if err != nil {
		t.Fatal(err)
	}
	_, kem, err := pqxdh.NewKEMPreKey(identity, 3, false)
	if err != nil {
		t.Fatal(err)
	}
	up := &codec.KeysUpload{
		Identity:   codec.ECKey(identity.PublicKey().Bytes()),
		Signed:     &codec.SignedECKey{ID: spk.ID, Key: spk.Public, Sig: spk.Signature},
		LastResort: &codec.KEMPreKey{ID: lr.ID, Key: lr.Public[:], Sig: lr.Signature},
		KEM:        []codec.KEMPreKey{{ID: kem.ID, Key: kem.Public[:], Sig: kem.Signature}},
	}
	if r, err := s.Upload(1, 1, up); err != nil || r.Counts.KEM != 1 {
		t.Fatalf("upload of pqxdh-signed keys: %+v, %v", r, err)
	}
}
