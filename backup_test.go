package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/account"
	"github.com/chatd/chatd/internal/server"
)

func backupTestConfig(dir string) server.Config {
	return server.Config{
		Addr: "127.0.0.1:0", DataDir: dir, Plaintext: true,
		Hashing:   account.Hashing{Time: 1, MemoryKiB: 64},
		CacheSize: 8 << 20, MemTableSize: 4 << 20, Quota: 1_000_000,
		LoginsPerSource: -1, FailedLoginsPerUser: -1, MaxFrameRate: -1, MaxByteRate: -1,
	}
}

// startBackupServer runs a server on dir with its admin listener; stop
// closes both and waits for Serve to return.
func startBackupServer(t *testing.T, dir string) (s *server.Server, admin string, stop func()) {
	t.Helper()
	s, err := server.New(backupTestConfig(dir))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		s.Close()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	addr, stopAdmin, err := s.Admin("127.0.0.1:0")
	if err != nil {
		s.Close()
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			stopAdmin()
			if err := s.Close(); err != nil {
				t.Error(err)
			}
			if err := <-done; err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(stop)
	return s, addr.String(), stop
}

func signInTo(ctx context.Context, t *testing.T, addr, name string, register bool) *client.Conn {
	t.Helper()
	c, err := client.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	if register {
		_, err = c.Register(ctx, name, "password-"+name)
	} else {
		_, err = c.Login(ctx, name, "password-"+name)
	}
	if err != nil {
		c.Close()
		t.Fatalf("%s: %v", name, err)
	}
	return c
}

// TestBackupUnderLoadRestoresEverythingAcknowledged takes a backup while
// senders stream to an offline recipient, restores it into a new folder,
// and checks that every message acknowledged (SENT) before the backup
// began is delivered by a server started on the restored folder.
func TestBackupUnderLoadRestoresEverythingAcknowledged(t *testing.T) {
	if testing.Short() {
		t.Skip("streams messages through two servers")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, admin, stop := startBackupServer(t, t.TempDir())
	addr := s.Addr().String()
	key := s.PublicKey()
	vapid := s.Push().Key().Public

	rc := signInTo(ctx, t, addr, "recipient", true)
	recipient := rc.Welcome.User
	rc.Close()

	const senders = 4
	var (
		mu    sync.Mutex
		acked = map[codec.MsgID]string{} // every SENT, with its body
		sent  = map[codec.MsgID]string{} // every SEND written
		wg    sync.WaitGroup
		conns []*client.Conn
	)
	for i := range senders {
		c := signInTo(ctx, t, addr, fmt.Sprintf("sender%d", i), true)
		conns = append(conns, c)
		wg.Add(2)
		go func() { // send until the connection closes
			defer wg.Done()
			for j := 0; ; j++ {
				id, body := client.NewID(), fmt.Sprintf("%d:%d", i, j)
				mu.Lock()
				sent[id] = body
				mu.Unlock()
				if c.SendID(id, 0, recipient, []byte(body), j%8 == 7) != nil {
					return
				}
				if j%64 == 63 {
					time.Sleep(time.Millisecond) // pacing, so the stream is still flowing when the backup runs
				}
			}
		}()
		go func() {
			defer wg.Done()
			for f := range c.Events() {
				if a, ok := f.(*codec.Sent); ok {
					mu.Lock()
					acked[a.ID] = sent[a.ID]
					mu.Unlock()
				}
			}
		}()
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	if !pollUntil(30*time.Second, func() bool { return count() >= 2000 }) {
		t.Fatalf("only %d messages acknowledged before the backup", count())
	}

	mu.Lock()
	before := make(map[codec.MsgID]string, len(acked))
	for id, body := range acked {
		before[id] = body
	}
	mu.Unlock()
	bk := filepath.Join(t.TempDir(), "backup")
	rep, err := requestBackup(&http.Client{Timeout: time.Minute}, admin, bk)
	if err != nil {
		t.Fatal(err)
	}
	during := count()
	// The stream must still be flowing after the backup, or it was not
	// taken under load.
	if !pollUntil(30*time.Second, func() bool { return count() > during }) {
		t.Fatal("no message acknowledged after the backup: it was not taken mid-stream")
	}
	for _, c := range conns {
		c.Close()
	}
	wg.Wait()
	stop()
	t.Logf("backup: %d files, %d bytes in %s; %d acknowledged before it began, %d by its end, %d in all",
		rep.Files, rep.Bytes, rep.Took, len(before), during, count())
	if !rep.NoiseKey || !rep.VAPIDKey || rep.Files < 3 || rep.Bytes == 0 {
		t.Fatalf("backup report %+v", rep)
	}

	data := filepath.Join(t.TempDir(), "restored")
	if _, err := restore(bk, data, false, time.Now()); err != nil {
		t.Fatal(err)
	}
	s2, _, _ := startBackupServer(t, data)
	if !bytes.Equal(s2.PublicKey(), key) {
		t.Fatal("the restored server has a new Noise key: clients that pinned the old one would refuse it")
	}
	if !bytes.Equal(s2.Push().Key().Public, vapid) {
		t.Fatal("the restored server has a new VAPID key: every push subscription was made for the old one")
	}
	c := signInTo(ctx, t, s2.Addr().String(), "recipient", false)
	defer c.Close()
	got := map[codec.MsgID]bool{}
	missing := len(before)
	deadline := time.After(time.Minute)
	for missing > 0 {
		select {
		case f, ok := <-c.Events():
			if !ok {
				t.Fatalf("connection closed: %v", c.Err())
			}
			d, isDeliver := f.(*codec.Deliver)
			if !isDeliver {
				continue
			}
			c.Ack(d.Seq, true)
			if got[d.ID] {
				continue
			}
			got[d.ID] = true
			mu.Lock()
			body, known := sent[d.ID]
			mu.Unlock()
			if !known || body != string(d.Body) {
				t.Fatalf("delivered %q (%v), which no sender sent", d.Body, d.ID)
			}
			if _, ok := before[d.ID]; ok {
				missing--
			}
		case <-deadline:
			for id, body := range before {
				if !got[id] {
					t.Fatalf("%d messages acknowledged before the backup are missing, e.g. %q (%v)", missing, body, id)
				}
			}
		}
	}
	t.Logf("all %d messages acknowledged before the backup were delivered after the restore (%d delivered so far)",
		len(before), len(got))
}

func pollUntil(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// TestRestoreRefuses checks restore's refusals: something that is not a
// backup, a data folder a server holds, a data folder not empty without
// -force; and that -force moves the old folder aside intact.
func TestRestoreRefuses(t *testing.T) {
	running := t.TempDir()
	_, admin, stop := startBackupServer(t, running)
	bk := filepath.Join(t.TempDir(), "backup")
	if _, err := requestBackup(&http.Client{Timeout: time.Minute}, admin, bk); err != nil {
		t.Fatal(err)
	}
	if _, err := requestBackup(&http.Client{Timeout: time.Minute}, admin, bk); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("a second backup into the same folder: %v", err)
	}

	notBackup := t.TempDir()
	os.WriteFile(filepath.Join(notBackup, "notes.txt"), []byte("hello"), 0o600)
	if _, err := restore(notBackup, filepath.Join(t.TempDir(), "d"), false, time.Now()); err == nil || !strings.Contains(err.Error(), "not a chatd backup") {
		t.Fatalf("restore from a folder that is not a backup: %v", err)
	}

	if _, err := restore(bk, running, true, time.Now()); err == nil || !strings.Contains(err.Error(), "a server is using") {
		t.Fatalf("restore into a running server's folder: %v", err)
	}
	stop()

	data := filepath.Join(t.TempDir(), "data")
	os.MkdirAll(data, 0o700)
	old := filepath.Join(data, "keep-me")
	os.WriteFile(old, []byte("old"), 0o600)
	if _, err := restore(bk, data, false, time.Now()); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("restore into a folder that is not empty, without -force: %v", err)
	}
	if b, err := os.ReadFile(old); err != nil || string(b) != "old" {
		t.Fatalf("a refused restore changed the folder: %q %v", b, err)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	aside, err := restore(bk, data, true, now)
	if err != nil {
		t.Fatal(err)
	}
	if want := data + ".before-restore-20260102T030405Z"; aside != want {
		t.Fatalf("moved aside to %s, want %s", aside, want)
	}
	if b, err := os.ReadFile(filepath.Join(aside, "keep-me")); err != nil || string(b) != "old" {
		t.Fatalf("the old folder was not kept intact: %q %v", b, err)
	}
	if err := looksLikeBackup(data); err != nil {
		t.Fatalf("restored folder: %v", err)
	}
	if _, err := os.Stat(filepath.Join(data, "keep-me")); err == nil {
		t.Fatal("the restored folder still has the old folder's files")
	}
}
