package server

import (
	"context"
	"crypto/rand"
	"errors"
	"github.com/chatd/chatd/internal/store/storetest"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/chatd/chatd/codec"
)

// adminGet fetches an admin endpoint and returns its status and body.
func adminGet(t *testing.T, base, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + base + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

func metricValue(t *testing.T, metrics, pattern string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(pattern) + ` (\S+)$`).FindStringSubmatch(metrics)
	if m == nil {
		t.Fatalf("metric %s missing from /metrics", pattern)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatalf("metric %s: %v", pattern, err)
	}
	return v
}

// TestStorageFullRefusesAndRecovers fills a small tmpfs with messages to
// an offline user. Before the storage watcher, Pebble's WAL write met
// ENOSPC and the process exited (Fatalf "pebble: fatal commit error").
// Now the server must stay up, refuse SENDs (and REGISTER) with ERROR 28
// before the disk is full, say so in /readyz and /metrics, and, once the
// recipient has read and acknowledged, accept again, with every message
// that got SENT delivered exactly once.
func TestStorageFullRefusesAndRecovers(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a 32 MiB tmpfs")
	}
	vol := storetest.MountTmpfs(t, 32<<20)
	cfg := testConfig(t)
	cfg.DataDir = filepath.Join(vol, "data")
	cfg.MemTableSize = 1 << 20
	cfg.CacheSize = 1 << 20
	cfg.Quota = 1_000_000
	cfg.QuotaBytes = 1 << 40
	cfg.Ballast = 4 << 20
	// Resume 8 MiB above the refusing mark: well past the few MiB that
	// flushes and compactions free after a flood, so the full state holds
	// while the test looks at it, and well below what bob's acks free.
	cfg.StorageHysteresis = 8 << 20
	cfg.StorageInterval = 10 * time.Millisecond
	s := startServer(t, cfg)
	admin, stopAdmin, err := s.Admin("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopAdmin() })
	if code, body := adminGet(t, admin.String(), "/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz before filling: %d %q", code, body)
	}
	if sp := s.space.Stats(); sp.Ballast != 4<<20 || sp.Full {
		t.Fatalf("at start: %+v, want a 4 MiB ballast and not full", sp)
	}

	alice := register(t, s, "alice")
	bob := register(t, s, "bob")
	bobID := bob.Welcome.User
	bob.Close() // offline: everything waits in his inbox

	// Flood 4 KiB incompressible bodies (as encrypted ones are), at most
	// 64 unanswered, until the server refuses one with ERROR 28.
	body := func() []byte {
		b := make([]byte, 4096)
		rand.Read(b)
		return b
	}
	sent := map[codec.MsgID]bool{}
	inflight := map[codec.MsgID]bool{}
	// As a client must, alice resends refused messages in the order she
	// first sent them (the server refuses a later one to bob until the
	// first refused comes again): retry is kept in that order.
	seqOf := map[codec.MsgID]int{}
	var retry []codec.MsgID
	send := func(body []byte, flush bool) codec.MsgID {
		var id codec.MsgID
		var err error
		if len(retry) > 0 {
			id, retry = retry[0], retry[1:]
			err = alice.SendID(id, codec.FlagDup, bobID, body, flush)
		} else {
			id, err = alice.Send(bobID, body, flush)
			seqOf[id] = len(seqOf)
		}
		if err != nil {
			t.Fatal(err)
		}
		inflight[id] = true
		return id
	}
	var firstRefusal, lastSent time.Time
	refused, streak := 0, 0
	handle := func(f codec.Frame) {
		switch f := f.(type) {
		case *codec.Sent:
			if !inflight[f.ID] {
				t.Fatalf("SENT for %v not in flight", f.ID)
			}
			delete(inflight, f.ID)
			sent[f.ID] = true
			lastSent, streak = time.Now(), 0
		case *codec.Error:
			if f.Code != codec.CodeStorageFull || !inflight[f.ID] {
				t.Fatalf("unexpected ERROR %v (%d) for %v", f.Code, f.Code, f.ID)
			}
			delete(inflight, f.ID)
			i := sort.Search(len(retry), func(i int) bool { return seqOf[retry[i]] > seqOf[f.ID] })
			retry = slices.Insert(retry, i, f.ID)
			if refused == 0 {
				firstRefusal = time.Now()
			}
			refused++
			streak++
		case *codec.Receipt:
			alice.Ack(f.Seq, true) // bob's delivery receipts: acking them frees space too
		case *codec.Pong:
		default:
			t.Fatalf("unexpected %v", f.Type())
		}
	}
	await := func(deadline time.Time) {
		select {
		case f, ok := <-alice.Events():
			if !ok {
				t.Fatalf("alice's connection ended while flooding (server down?): %v", alice.Err())
			}
			handle(f)
		case <-time.After(time.Until(deadline)):
			t.Fatalf("no answer from the server; %d SENT, %d refused, %d in flight", len(sent), refused, len(inflight))
		}
	}
	// The first refusals can come while a flush or compaction briefly
	// holds extra space, and the server accepts again once it is freed, as
	// it should. So the flood goes on, a client retrying refused messages
	// every few milliseconds, until nothing has been accepted for a second.
	start := time.Now()
	deadline := start.Add(60 * time.Second)
	var firstRefused int
	for refused == 0 || time.Since(lastSent) < time.Second {
		if len(sent) > 20_000 || time.Now().After(deadline) {
			t.Fatalf("not refusing steadily after %d messages (%v), %d refused; storage %+v",
				len(sent), time.Since(start), refused, s.space.Stats())
		}
		if refused == 0 {
			firstRefused = len(sent)
		}
		window := 64
		if streak > 0 {
			window = 1
			time.Sleep(5 * time.Millisecond) // the client's retry delay
		}
		for len(inflight) < window {
			send(body(), len(inflight) == window-1)
		}
		await(deadline)
	}
	for len(inflight) > 0 {
		await(deadline)
	}
	filled := time.Since(start)
	st := s.space.Stats()
	t.Logf("first ERROR 28 after %d SENT messages (%d MiB of bodies) in %v; refusing steadily after %d SENT (%d MiB) and %d refusals, %v; storage %+v",
		firstRefused, firstRefused*4096>>20, firstRefusal.Sub(start).Round(time.Millisecond), len(sent), len(sent)*4096>>20,
		refused, filled.Round(time.Millisecond), st)
	if !st.Full || st.Ballast != 0 {
		t.Fatalf("storage after refusal: %+v, want full with the ballast released", st)
	}

	// The server is up and says why it refuses.
	if code, body := adminGet(t, admin.String(), "/readyz"); code != http.StatusServiceUnavailable || !regexp.MustCompile("storage full").MatchString(body) {
		t.Fatalf("/readyz while full: %d %q", code, body)
	}
	_, metrics := adminGet(t, admin.String(), "/metrics")
	if v := metricValue(t, metrics, "chatd_storage_full"); v != 1 {
		t.Fatalf("chatd_storage_full = %v, want 1", v)
	}
	if free := metricValue(t, metrics, `chatd_storage_bytes{metric="free"}`); free <= 0 || free > float64(st.Resume) {
		t.Fatalf("free bytes %v while full (resume mark %d)", free, st.Resume)
	}
	if v := metricValue(t, metrics, `chatd_rejects_total{reason="storage_full"}`); v < 1 {
		t.Fatalf("storage_full rejects = %v", v)
	}
	carol := dial(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var refusal *codec.Error
	if _, err := carol.Register(ctx, "carol", "password-carol"); !errors.As(err, &refusal) || refusal.Code != codec.CodeStorageFull {
		t.Fatalf("REGISTER while full: %v, want ERROR 28", err)
	}

	// Bob logs in, reads and acknowledges; acks and deliveries go on
	// while new messages are refused.
	bob = dial(t, s)
	if _, err := bob.Login(ctx, "bob", "password-bob"); err != nil {
		t.Fatalf("bob's login while full: %v", err)
	}
	got := map[codec.MsgID]int{}
	receive := func(wait time.Duration) bool {
		select {
		case f, ok := <-bob.Events():
			if !ok {
				t.Fatalf("bob's connection ended: %v", bob.Err())
			}
			switch f := f.(type) {
			case *codec.Deliver:
				got[f.ID]++
				if got[f.ID] > 1 {
					t.Fatalf("%v delivered twice", f.ID)
				}
				if !sent[f.ID] {
					t.Fatalf("%v delivered but never acknowledged with SENT", f.ID)
				}
				bob.Ack(f.Seq, true)
			case *codec.Pong:
			default:
				t.Fatalf("bob got %v", f.Type())
			}
			return true
		case <-time.After(wait):
			return false
		}
	}
	for len(got) < len(sent) {
		if !receive(10 * time.Second) {
			t.Fatalf("bob received %d of %d", len(got), len(sent))
		}
	}
	drained := time.Since(firstRefusal)

	// Alice keeps trying, as a client would after ERROR 28, until the
	// server takes her message again.
	var probe codec.MsgID
	tries := 0
	for probe == (codec.MsgID{}) {
		if time.Since(firstRefusal) > 60*time.Second {
			t.Fatalf("still refusing %v after the first refusal; storage %+v", time.Since(firstRefusal), s.space.Stats())
		}
		tries++
		id := send([]byte("after the storm"), true)
		for len(inflight) > 0 {
			await(time.Now().Add(10 * time.Second))
		}
		if sent[id] {
			probe = id
		} else {
			time.Sleep(20 * time.Millisecond) // a client's retry delay, not a wait for a condition
		}
	}
	recovered := time.Since(firstRefusal)
	for got[probe] == 0 {
		if !receive(10 * time.Second) {
			t.Fatal("the message sent after recovery was not delivered")
		}
	}
	st = s.space.Stats()
	t.Logf("bob drained %d messages %v after the first refusal; alice's SEND succeeded again after %v and %d tries; storage %+v",
		len(sent)-1, drained.Round(time.Millisecond), recovered.Round(time.Millisecond), tries, st)
	if st.ENOSPCRecoveries != 0 {
		t.Errorf("Pebble met ENOSPC %d times: the reserve did not keep it off a full disk", st.ENOSPCRecoveries)
	}
	if st.Full || st.Ballast == 0 {
		t.Fatalf("after recovery: %+v, want not full with the ballast back", st)
	}
	if code, body := adminGet(t, admin.String(), "/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz after recovery: %d %q", code, body)
	}
	for id := range sent {
		if got[id] != 1 {
			t.Fatalf("%v got SENT but was delivered %d times", id, got[id])
		}
	}
}
