package push

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatd/chatd/internal/push/pushtest"
	"github.com/chatd/chatd/internal/store"
	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fixture is a push service over a fresh store, posting to a receiver.
type fixture struct {
	t    *testing.T
	dir  string
	db   *pebble.DB
	st   *Store
	svc  *Service
	recv *pushtest.Receiver
}

func newFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	f := &fixture{t: t, dir: t.TempDir()}
	f.open(cfg)
	f.recv = pushtest.New(f.svc.Key().Public)
	t.Cleanup(func() {
		f.svc.Close()
		f.recv.Close()
		f.db.Close()
	})
	return f
}

func (f *fixture) open(cfg Config) {
	f.t.Helper()
	db, err := store.Open(filepath.Join(f.dir, "db"), store.Options{CacheSize: 1 << 20, MemTableSize: 4 << 20})
	if err != nil {
		f.t.Fatal(err)
	}
	st, err := OpenStore(db)
	if err != nil {
		f.t.Fatal(err)
	}
	cfg.KeyFile = filepath.Join(f.dir, "vapid.key")
	cfg.AllowHTTPLoopback = true
	if cfg.Window == 0 {
		cfg.Window = 50 * time.Millisecond
	}
	if cfg.Backoff == 0 {
		cfg.Backoff = 10 * time.Millisecond
	}
	svc, err := Open(st, cfg)
	if err == nil {
		err = svc.Start()
	}
	if err != nil {
		f.t.Fatal(err)
	}
	f.db, f.st, f.svc = db, st, svc
}

// reopen closes the service and the store and opens them again: a restart.
func (f *fixture) reopen(cfg Config) {
	f.svc.Close()
	if err := f.db.Close(); err != nil {
		f.t.Fatal(err)
	}
	f.open(cfg)
}

func (f *fixture) subscribe(user uint64, device uint32, name string) *pushtest.Device {
	f.t.Helper()
	d := f.recv.Device(name)
	if err := f.svc.Policy().Check(d.Endpoint); err != nil {
		f.t.Fatal(err)
	}
	if err := f.st.Put(user, Subscription{Device: device, Created: 1, Endpoint: d.Endpoint, P256dh: d.P256dh, Auth: d.Auth}); err != nil {
		f.t.Fatal(err)
	}
	return d
}

// eventually polls cond until it holds or 5 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling, not waiting for a condition blind
	}
}

func (f *fixture) dueKey(user uint64) bool {
	_, closer, err := f.db.Get(userPrefix(PrefixDue, user))
	if err == nil {
		closer.Close()
		return true
	}
	return false
}

type payload struct {
	Kind  string `json:"kind"`
	Count int    `json:"count"`
}

func decode(t *testing.T, p pushtest.Push) payload {
	t.Helper()
	var v payload
	if err := json.Unmarshal(p.Payload, &v); err != nil {
		t.Fatalf("payload %q: %v", p.Payload, err)
	}
	return v
}

// A burst of entries for an offline user makes one push, whose VAPID
// signature and encryption the receiver checked, carrying only the count.
func TestBurstCoalescesIntoOnePush(t *testing.T) {
	f := newFixture(t, Config{Subject: "mailto:ops@example.org", TTL: time.Hour})
	f.subscribe(7, 1, "phone")
	for range 5 {
		f.svc.Due(7, UrgencyLow)
	}
	f.svc.Due(7, UrgencyHigh)
	got, err := f.recv.Wait(1, 5*time.Second)
	if err != nil {
		t.Fatal(err, f.recv.Bad())
	}
	p := got[0]
	if v := decode(t, p); v != (payload{"sync", 6}) {
		t.Fatalf("payload %+v, want sync with count 6", v)
	}
	if p.Urgency != "high" || p.Topic != topic || p.TTL != 3600 || p.Subject != "mailto:ops@example.org" {
		t.Fatalf("push headers: urgency %q topic %q ttl %d sub %q", p.Urgency, p.Topic, p.TTL, p.Subject)
	}
	eventually(t, "the due key to go", func() bool { return !f.dueKey(7) })
	if n := len(f.recv.Pushes()); n != 1 {
		t.Fatalf("%d pushes for one burst", n)
	}
	if st := f.svc.Stats(); st.Sent != 1 || st.QueueDepth != 0 {
		t.Fatalf("stats %+v", st)
	}
	if f.svc.Latency().Snapshot().Count != 1 {
		t.Fatal("push latency not observed")
	}
}

// Receipts alone push at low urgency; users without subscriptions cost
// nothing and get nothing.
func TestReceiptsPushLowAndUnsubscribedNothing(t *testing.T) {
	f := newFixture(t, Config{})
	f.subscribe(1, 1, "a")
	f.svc.Due(2, UrgencyHigh) // no subscription
	f.svc.Due(1, UrgencyLow)
	got, err := f.recv.Wait(1, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Urgency != "low" || got[0].Device != "a" {
		t.Fatalf("push %+v", got[0])
	}
	f.svc.mu.Lock()
	open := len(f.svc.windows)
	f.svc.mu.Unlock()
	if open != 0 || f.dueKey(2) {
		t.Fatal("a user without subscriptions got a window")
	}
}

// A user back online before the window closes gets no push.
func TestOnlineWhenWindowClosesNoPush(t *testing.T) {
	var online atomic.Bool
	f := newFixture(t, Config{Online: func(uint64) bool { return online.Load() }})
	f.subscribe(1, 1, "a")
	f.svc.Due(1, UrgencyHigh)
	online.Store(true)
	eventually(t, "the window to close", func() bool { return f.svc.Stats().Online == 1 })
	eventually(t, "the due key to go", func() bool { return !f.dueKey(1) })
	if n := len(f.recv.Pushes()); n != 0 {
		t.Fatalf("%d pushes to an online user", n)
	}
}

// 410 deletes the subscription; 404 as well.
func TestGoneDropsSubscription(t *testing.T) {
	for _, code := range []int{http.StatusGone, http.StatusNotFound} {
		t.Run(http.StatusText(code), func(t *testing.T) {
			f := newFixture(t, Config{})
			f.recv.Answer = func(int, string, http.Header) int { return code }
			f.subscribe(3, 1, "old")
			f.svc.Due(3, UrgencyHigh)
			eventually(t, "the subscription to go", func() bool { return !f.st.Has(3) })
			subs, err := f.st.List(3)
			if err != nil || len(subs) != 0 {
				t.Fatalf("subscriptions after %d: %v %v", code, subs, err)
			}
			if st := f.svc.Stats(); st.Dropped != 1 || st.Sent != 0 {
				t.Fatalf("stats %+v", st)
			}
			eventually(t, "the due key to go", func() bool { return !f.dueKey(3) })
		})
	}
}

// 503 and 429 are retried, after Retry-After when the service gives one.
func TestRetriesHonourRetryAfter(t *testing.T) {
	f := newFixture(t, Config{})
	f.recv.Answer = func(n int, _ string, h http.Header) int {
		switch n {
		case 1:
			return http.StatusServiceUnavailable // backoff
		case 2:
			h.Set("Retry-After", "1")
			return http.StatusTooManyRequests
		}
		return http.StatusCreated
	}
	f.subscribe(4, 1, "a")
	f.svc.Due(4, UrgencyHigh)
	got, err := f.recv.Wait(3, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if gap := got[2].At.Sub(got[1].At); gap < time.Second {
		t.Fatalf("retried %v after a Retry-After of 1 s", gap)
	}
	if got[2].Status != http.StatusCreated || decode(t, got[2]).Count != 1 {
		t.Fatalf("last attempt %+v", got[2])
	}
	eventually(t, "sent", func() bool { return f.svc.Stats().Sent == 1 })
	if st := f.svc.Stats(); st.Retries != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// A job that keeps failing stops after its attempts and counts a reason;
// a 4xx other than 404, 410 and 429 is not retried.
func TestFailuresCountedByReason(t *testing.T) {
	f := newFixture(t, Config{Attempts: 3})
	f.recv.Answer = func(_ int, dev string, _ http.Header) int {
		if dev == "bad" {
			return http.StatusForbidden
		}
		return http.StatusBadGateway
	}
	f.subscribe(5, 1, "bad")
	f.subscribe(6, 1, "flaky")
	f.svc.Due(5, UrgencyHigh)
	f.svc.Due(6, UrgencyHigh)
	eventually(t, "both to fail", func() bool {
		st := f.svc.Stats()
		return st.Failed[FailRejected] == 1 && st.Failed[FailServer] == 1
	})
	if n := len(f.recv.Pushes()); n != 1+3 {
		t.Fatalf("%d requests, want 1 (403) + 3 (502)", n)
	}
	eventually(t, "the due keys to go", func() bool { return !f.dueKey(5) && !f.dueKey(6) })
}

// A push due when the service stops is sent after the restart, when the
// user's inbox still holds entries; not when it was drained meanwhile.
func TestRestartDeliversDuePush(t *testing.T) {
	f := newFixture(t, Config{Window: time.Hour})
	f.subscribe(8, 1, "a")
	f.subscribe(9, 1, "b")
	f.svc.Due(8, UrgencyHigh)
	f.svc.Due(8, UrgencyHigh)
	f.svc.Due(9, UrgencyHigh)
	eventually(t, "the due keys", func() bool { return f.dueKey(8) && f.dueKey(9) })
	f.reopen(Config{Pending: func(u uint64) bool { return u == 8 }})
	got, err := f.recv.Wait(1, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Device != "a" || decode(t, got[0]).Count != 2 {
		t.Fatalf("push after restart %+v", got[0])
	}
	eventually(t, "the due keys to go", func() bool { return !f.dueKey(8) && !f.dueKey(9) })
	if n := len(f.recv.Pushes()); n != 1 {
		t.Fatalf("%d pushes after restart, want 1 (user 9's inbox was empty)", n)
	}
}

// Close does not wait for a push service that hangs; the push stays due.
func TestCloseWithHangingService(t *testing.T) {
	f := newFixture(t, Config{Timeout: time.Minute})
	f.recv.Hang = make(chan struct{})
	defer close(f.recv.Hang)
	f.subscribe(1, 1, "a")
	f.svc.Due(1, UrgencyHigh)
	eventually(t, "the request to be under way", func() bool { return f.svc.Stats().QueueDepth == 0 && f.dueKey(1) })
	start := time.Now()
	f.svc.Close()
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Close took %v", d)
	}
	if !f.dueKey(1) {
		t.Fatal("the unfinished push left the due-set")
	}
}

func TestStoreListRemoveDeleteUser(t *testing.T) {
	f := newFixture(t, Config{Window: time.Hour})
	a := f.subscribe(1, 1, "a")
	f.subscribe(1, 2, "b")
	f.subscribe(2, 1, "c")
	subs, err := f.st.List(1)
	if err != nil || len(subs) != 2 || subs[0].Device != 1 || subs[1].Device != 2 {
		t.Fatalf("list %+v %v", subs, err)
	}
	if s := subs[0]; !bytes.Equal(s.P256dh, a.P256dh) || !bytes.Equal(s.Auth, a.Auth) || s.Endpoint != a.Endpoint || s.Created != 1 {
		t.Fatalf("stored %+v, subscribed %+v", s, a)
	}
	if err := f.st.Remove(1, 3); !errors.Is(err, ErrUnknownDevice) {
		t.Fatalf("remove of an unknown device: %v", err)
	}
	if err := f.st.Remove(1, 2); err != nil {
		t.Fatal(err)
	}
	f.svc.Due(1, UrgencyHigh)
	eventually(t, "the due key", func() bool { return f.dueKey(1) })
	if err := f.st.DeleteUser(1); err != nil {
		t.Fatal(err)
	}
	if f.st.Has(1) || f.dueKey(1) || !f.st.Has(2) || f.st.Users() != 1 {
		t.Fatal("DeleteUser left something, or took another user's")
	}
	// A replaced subscription keeps one count.
	f.subscribe(2, 1, "c2")
	if f.st.Users() != 1 {
		t.Fatal("replace counted twice")
	}
}

func TestVAPIDKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "vapid.key")
	k, created, err := LoadOrCreateVAPID(path)
	if err != nil || !created || len(k.Private) != 32 || len(k.Public) != 65 {
		t.Fatalf("create: %v %v", created, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v (%v)", fi.Mode().Perm(), err)
	}
	k2, created, err := LoadOrCreateVAPID(path)
	if err != nil || created || !bytes.Equal(k.Public, k2.Public) {
		t.Fatalf("reload: %v %v", created, err)
	}
	os.WriteFile(path, []byte("short"), 0o600)
	if _, _, err := LoadOrCreateVAPID(path); err == nil {
		t.Fatal("a bad key file was taken")
	}
}

// Close with every worker stuck, the queue full and the coalescer waiting
// for room loses no due push: each is sent after the restart.
func TestCloseUnderBackPressureKeepsEveryDuePush(t *testing.T) {
	f := newFixture(t, Config{Workers: 1, Queue: 1, Timeout: time.Minute})
	f.recv.Hang = make(chan struct{})
	users := []uint64{11, 12, 13, 14}
	for i, u := range users {
		f.subscribe(u, 1, fmt.Sprintf("d%d", i))
		f.svc.Due(u, UrgencyHigh)
	}
	// One request hangs, one job waits in the queue, the coalescer waits
	// for room with the third; the fourth window may be open or waiting.
	eventually(t, "the queue to fill", func() bool { return len(f.svc.jobs) == 1 })
	f.svc.Close()
	close(f.recv.Hang)
	for _, u := range users {
		if !f.dueKey(u) {
			t.Fatalf("user %d's push left the due-set at close", u)
		}
	}
	f.reopen(Config{})
	// The hung request may or may not have reached the receiver's record
	// as Close cancelled it: count devices, not requests.
	seen := map[string]bool{}
	eventually(t, "a push to every device", func() bool {
		for _, p := range f.recv.Pushes() {
			seen[p.Device] = true
		}
		return len(seen) == len(users)
	})
}
