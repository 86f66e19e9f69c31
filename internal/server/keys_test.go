package server

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/e2e/pqxdh"
)

// uploadKeys generates a device's keys and uploads them with ec and kem
// one-time prekeys, as many frames as that takes.
func uploadKeys(t *testing.T, c *client.Conn, ec, kem int) (*client.DeviceKeys, codec.KeysCounts) {
	t.Helper()
	d, err := client.NewDeviceKeys()
	if err != nil {
		t.Fatal(err)
	}
	return d, uploadMore(t, c, d, true, ec, kem)
}

func uploadMore(t *testing.T, c *client.Conn, d *client.DeviceKeys, longLived bool, ec, kem int) codec.KeysCounts {
	t.Helper()
	ups, err := d.Uploads(longLived, ec, kem)
	if err != nil {
		t.Fatal(err)
	}
	var counts codec.KeysCounts
	for _, up := range ups {
		if counts, err = c.UploadKeys(ctx10(t), up); err != nil {
			t.Fatalf("upload: %v", err)
		}
	}
	return counts
}

func TestKeysUploadCountFetchCheck(t *testing.T) {
	s := startServer(t, testConfig(t))
	alice := register(t, s, "alice")
	bob := register(t, s, "bob")
	aliceID := alice.Welcome.User

	if _, err := alice.KeyCounts(ctx10(t)); codeOf(err) != codec.CodeNoKeys {
		t.Fatalf("count before upload: %v, want ERROR 82", err)
	}
	if _, err := bob.FetchKeys(ctx10(t), aliceID, 0); codeOf(err) != codec.CodeNoKeys {
		t.Fatalf("fetch before upload: %v, want ERROR 82", err)
	}
	d, counts := uploadKeys(t, alice, 100, 10)
	if counts.EC != 100 || counts.KEM != 10 || counts.Device != 1 {
		t.Fatalf("counts after upload: %+v", counts)
	}
	if c, err := alice.KeyCounts(ctx10(t)); err != nil || c.EC != 100 || c.KEM != 10 {
		t.Fatalf("KEYS_COUNT: %+v, %v", c, err)
	}

	bundles, err := bob.FetchKeys(ctx10(t), aliceID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(bundles) != 1 || bundles[0].Device != 1 || bundles[0].Identity != d.IdentityKey() || bundles[0].EC == nil {
		t.Fatalf("bundles %+v", bundles)
	}
	if err := client.VerifyBundle(&bundles[0]); err != nil {
		t.Fatal(err)
	}
	if d.EC[bundles[0].EC.ID] == nil || d.KEM[bundles[0].KEM.ID] == nil {
		t.Fatal("the bundle's one-time keys are not ones alice generated")
	}
	if c, _ := alice.KeyCounts(ctx10(t)); c.EC != 99 || c.KEM != 9 {
		t.Fatalf("after one fetch: %+v", c)
	}

	if ok, err := alice.CheckKeys(ctx10(t), d.Digest()); err != nil || !ok {
		t.Fatalf("KEYS_CHECK own digest: %v, %v", ok, err)
	}
	if ok, err := alice.CheckKeys(ctx10(t), codec.Digest{9}); err != nil || ok {
		t.Fatalf("KEYS_CHECK other digest: %v, %v", ok, err)
	}
	if ok, err := bob.CheckKeys(ctx10(t), d.Digest()); err != nil || ok {
		t.Fatalf("KEYS_CHECK without keys: %v, %v", ok, err)
	}

	// Refused uploads: a forged signature, a first upload without the
	// long-lived keys, and unknown flags.
	ups, _ := d.Uploads(true, 1, 1)
	ups[0].KEM[0].Sig[3] ^= 1
	if _, err := alice.UploadKeys(ctx10(t), ups[0]); codeOf(err) != codec.CodeBadSignature {
		t.Fatalf("forged KEM signature: %v, want ERROR 80", err)
	}
	fresh, _ := client.NewDeviceKeys()
	ups, _ = fresh.Uploads(false, 1, 0)
	if _, err := bob.UploadKeys(ctx10(t), ups[0]); codeOf(err) != codec.CodeInvalidKeys {
		t.Fatalf("first upload without long-lived keys: %v, want ERROR 84", err)
	}
	ups, _ = d.Uploads(false, 1, 0)
	ups[0].Flags = 0x10
	if _, err := alice.UploadKeys(ctx10(t), ups[0]); codeOf(err) != codec.CodeInvalidKeys {
		t.Fatalf("unknown flags: %v, want ERROR 84", err)
	}
	if _, err := bob.FetchKeys(ctx10(t), 999999, 0); codeOf(err) != codec.CodeUnknownUser {
		t.Fatalf("fetch of no user: %v, want ERROR 20", err)
	}
	if c, _ := alice.KeyCounts(ctx10(t)); c.EC != 99 || c.KEM != 9 {
		t.Fatalf("refused uploads changed the counts: %+v", c)
	}
}

// fetchAllOnce has each of conns fetch user's keys each times, all at
// once, and checks that every one-time key (ec EC and kem KEM keys, d's)
// went out exactly once and the last-resort key the rest of the times.
func fetchAllOnce(t *testing.T, conns []*client.Conn, user uint64, d *client.DeviceKeys, each, ec, kem int) {
	t.Helper()
	var mu sync.Mutex
	gotEC, gotKEM := map[uint32]int{}, map[uint32]int{}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for range each {
				bs, err := c.FetchKeys(ctx10(t), user, 1)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if bs[0].EC != nil {
					gotEC[bs[0].EC.ID]++
				}
				gotKEM[bs[0].KEM.ID]++
				mu.Unlock()
			}
		}()
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	if len(gotEC) != ec {
		t.Fatalf("%d distinct EC prekeys handed out, want %d", len(gotEC), ec)
	}
	for id, n := range gotEC {
		if n != 1 || d.EC[id] == nil {
			t.Fatalf("EC prekey %d handed out %d times (generated: %v)", id, n, d.EC[id] != nil)
		}
	}
	for id, n := range gotKEM {
		switch {
		case id == d.LastID:
			if n != len(conns)*each-kem {
				t.Fatalf("last-resort key handed out %d times, want %d", n, len(conns)*each-kem)
			}
		case n != 1 || d.KEM[id] == nil:
			t.Fatalf("KEM prekey %d handed out %d times", id, n)
		}
	}
	if len(gotKEM) != kem+1 {
		t.Fatalf("%d distinct KEM keys, want %d one-time and the last resort", len(gotKEM), kem)
	}
}

// TestKeysConcurrentFetchesExactlyOnce has many users on their own
// sockets fetch one user's keys at once: every one-time key is handed
// out exactly once, then the last-resort KEM key takes over, and the
// owner hears KEYS_LOW once when its keys fall below the threshold.
func TestKeysConcurrentFetchesExactlyOnce(t *testing.T) {
	cfg := testConfig(t)
	cfg.KeyFetches = -1
	s := startServer(t, cfg)
	alice := register(t, s, "alice")
	const ec, kem, fetchers, each = 60, 12, 24, 4 // 96 fetches
	d, _ := uploadKeys(t, alice, ec, kem)

	conns := make([]*client.Conn, fetchers)
	for i := range conns {
		conns[i] = register(t, s, fmt.Sprintf("fetcher%d", i))
	}
	fetchAllOnce(t, conns, alice.Welcome.User, d, each, ec, kem)
	if n := s.counters.keys.bundles.Load(); n != fetchers*each {
		t.Fatalf("bundle counter %d, want %d", n, fetchers*each)
	}
	if n := s.counters.keys.lastResort.Load(); n != fetchers*each-kem {
		t.Fatalf("last_resort counter %d, want %d", n, fetchers*each-kem)
	}
	low := next[*codec.KeysLow](t, alice)
	if low.Device != 1 || int(low.KEM) >= 3 {
		t.Fatalf("KEYS_LOW %+v", low)
	}
	// Refilling answers with the new counts.
	if c := uploadMore(t, alice, d, false, 20, 5); c.EC != 20 || c.KEM != 5 {
		t.Fatalf("after refill: %+v", c)
	}
}

func TestKeysFetchRateLimited(t *testing.T) {
	cfg := testConfig(t)
	cfg.KeyFetches = 2
	s := startServer(t, cfg)
	alice := register(t, s, "alice")
	bob := register(t, s, "bob")
	carol := register(t, s, "carol")
	uploadKeys(t, alice, 10, 1)
	for range 2 {
		if _, err := bob.FetchKeys(ctx10(t), alice.Welcome.User, 0); err != nil {
			t.Fatal(err)
		}
	}
	_, err := bob.FetchKeys(ctx10(t), alice.Welcome.User, 0)
	if codeOf(err) != codec.CodeFetchLimited {
		t.Fatalf("third fetch: %v, want ERROR 83", err)
	}
	// The limit is per (requester, target): carol is not bob.
	if _, err := carol.FetchKeys(ctx10(t), alice.Welcome.User, 0); err != nil {
		t.Fatalf("another requester: %v", err)
	}
	if c, _ := alice.KeyCounts(ctx10(t)); c.EC != 7 {
		t.Fatalf("a refused fetch took a key: %d EC left, want 7", c.EC)
	}
}

// TestIdentityChanged: a new identity key reaches everyone who fetched
// the old keys and everyone in a group with its owner: at once when
// online, at the next login (once) when offline.
func TestIdentityChanged(t *testing.T) {
	s := startServer(t, testConfig(t))
	alice := register(t, s, "alice")
	bob := register(t, s, "bob")     // fetches, stays online
	carol := register(t, s, "carol") // shares a group, stays online
	dave := register(t, s, "dave")   // fetches, then goes offline
	erin := register(t, s, "erin")   // neither: hears nothing
	aliceID := alice.Welcome.User
	createGroup(t, alice, "team", carol)
	uploadKeys(t, alice, 10, 2)
	for _, c := range []*client.Conn{bob, dave} {
		if _, err := c.FetchKeys(ctx10(t), aliceID, 0); err != nil {
			t.Fatal(err)
		}
	}
	dave.Close()
	waitFor(t, func() bool { _, on := s.sessions.Lookup(dave.Welcome.User); return !on })

	// Same identity, new signed prekey: no notice.
	uploadKeys(t, alice, 0, 0) // a new DeviceKeys: a new identity
	want := codec.IdentityChanged{User: aliceID, Device: 1}
	for name, c := range map[string]*client.Conn{"bob": bob, "carol": carol} {
		if got := until[*codec.IdentityChanged](t, c); *got != want {
			t.Fatalf("%s got %+v", name, got)
		}
	}
	dave2 := login(t, s, "dave")
	if got := until[*codec.IdentityChanged](t, dave2); *got != want {
		t.Fatalf("dave at login got %+v", got)
	}
	dave2.Close()
	waitFor(t, func() bool { _, on := s.sessions.Lookup(dave.Welcome.User); return !on })
	dave3 := login(t, s, "dave")
	// Told once. The login's notices go out on dave's commit lane before
	// the answer to a later request on it, so KEYS_COUNT's answer (ERROR
	// 82: dave has no keys) comes after any notice would.
	if _, err := dave3.KeyCounts(ctx10(t)); codeOf(err) != codec.CodeNoKeys {
		t.Fatalf("dave's KEYS_COUNT: %v", err)
	}
	for _, f := range pong(t, dave3, 7, 10*time.Second) {
		if _, again := f.(*codec.IdentityChanged); again {
			t.Fatal("dave was told twice")
		}
	}
	for _, f := range pong(t, erin, 8, 10*time.Second) {
		t.Fatalf("erin got %v %+v", f.Type(), f)
	}
}

func TestKeysLowAtLogin(t *testing.T) {
	cfg := testConfig(t)
	cfg.Prekeys.LowEC, cfg.Prekeys.LowKEM = 3, 1
	s := startServer(t, cfg)
	alice := register(t, s, "alice")
	bob := register(t, s, "bob")
	uploadKeys(t, alice, 4, 2)
	alice.Close()
	waitFor(t, func() bool { _, on := s.sessions.Lookup(alice.Welcome.User); return !on })
	for range 2 {
		if _, err := bob.FetchKeys(ctx10(t), alice.Welcome.User, 0); err != nil {
			t.Fatal(err)
		}
	}
	alice2 := login(t, s, "alice")
	low := until[*codec.KeysLow](t, alice2)
	if *low != (codec.KeysLow{Device: 1, EC: 2, KEM: 0}) {
		t.Fatalf("KEYS_LOW at login: %+v", low)
	}
}

// TestKeysTakenSurviveRestart: a key handed out before a restart is never
// handed out after it (the take is deleted in the synced write that
// hands it out), and the rest still are.
func TestKeysTakenSurviveRestart(t *testing.T) {
	cfg := testConfig(t)
	cfg.KeyFetches = -1
	s, stop := serve(t, cfg)
	alice := register(t, s, "alice")
	bob := register(t, s, "bob")
	aliceID := alice.Welcome.User
	uploadKeys(t, alice, 6, 3)
	seen := map[uint32]bool{}
	fetch := func(c *client.Conn) {
		bs, err := c.FetchKeys(ctx10(t), aliceID, 0)
		if err != nil {
			t.Fatal(err)
		}
		if bs[0].EC == nil || seen[bs[0].EC.ID] {
			t.Fatalf("EC prekey %+v missing or handed out twice", bs[0].EC)
		}
		seen[bs[0].EC.ID] = true
	}
	for range 3 {
		fetch(bob)
	}
	alice.Close()
	bob.Close()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	s = startServer(t, cfg)
	bob = login(t, s, "bob")
	for range 3 {
		fetch(bob)
	}
	bs, err := bob.FetchKeys(ctx10(t), aliceID, 0)
	if err != nil || bs[0].EC != nil {
		t.Fatalf("after all 6: %+v, %v; want a bundle without an EC prekey", bs, err)
	}
}

// TestKeysPQXDHOverDirectory: bundles the directory hands out start real
// PQXDH sessions (internal/e2e/pqxdh): alice fetches bob's bundle over a
// socket, initiates, and bob, from his private keys, derives the same
// secret: with one-time keys, and with the last-resort key once those are
// gone.
func TestKeysPQXDHOverDirectory(t *testing.T) {
	cfg := testConfig(t)
	cfg.KeyFetches = -1
	s := startServer(t, cfg)
	alice := register(t, s, "alice")
	bob := register(t, s, "bob")
	bobKeys, _ := uploadKeys(t, bob, 1, 1)
	aliceKeys, err := client.NewDeviceKeys()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		bs, err := alice.FetchKeys(ctx10(t), bob.Welcome.User, 0)
		if err != nil {
			t.Fatal(err)
		}
		msg, aliceSecret, err := pqxdh.Initiate(aliceKeys.Identity, client.PQXDHBundle(&bs[0]))
		if err != nil {
			t.Fatalf("session %d: initiate: %v", i, err)
		}
		if (msg.OneTimePreKeyID != nil) != (i == 0) || (msg.KEMPreKeyID == bobKeys.LastID) != (i == 1) {
			t.Fatalf("session %d: one-time EC %v, KEM %d (last resort %d)", i, msg.OneTimePreKeyID, msg.KEMPreKeyID, bobKeys.LastID)
		}
		bobSecret, err := bobKeys.Respond(msg)
		if err != nil {
			t.Fatalf("session %d: respond: %v", i, err)
		}
		if bobSecret.SharedKey != aliceSecret.SharedKey {
			t.Fatalf("session %d: the two sides derived different keys", i)
		}
	}
}
