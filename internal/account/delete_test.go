package account

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/chatd/chatd/internal/store"
	"github.com/cockroachdb/pebble/v2"
)

func openHold(t *testing.T, dir string, hold time.Duration) (*Store, *pebble.DB) {
	t.Helper()
	db, err := store.Open(dir, store.Options{CacheSize: 1 << 20, MemTableSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(db, Config{Hashing: Hashing{Time: 1, MemoryKiB: 64}, NameHold: hold})
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	return s, db
}

// A deletion that began survives a reopen as unfinished, the account is
// gone for every reader from the first step on, and the name comes back
// only after the hold.
func TestDeleteInTwoSteps(t *testing.T) {
	dir := t.TempDir()
	s, db := openHold(t, dir, 300*time.Millisecond)
	is, err := s.Register([]byte("alice"), []byte("correct horse"), "")
	alice, tok := is.User, is.Token
	if err != nil {
		t.Fatal(err)
	}
	bi, err := s.Register([]byte("bob"), []byte("battery staple"), "")
	bob := bi.User
	if err != nil {
		t.Fatal(err)
	}
	if err := s.BeginDelete(alice, []byte("wrong horse")); !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("wrong password: %v", err)
	}
	if s.Deleted(alice) {
		t.Fatal("a refused deletion marked the account")
	}
	if err := s.BeginDelete(alice, []byte("correct horse")); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s, db = openHold(t, dir, 300*time.Millisecond)
	defer func() { db.Close() }()
	if got := s.Deleting(); !slices.Equal(got, []uint64{alice}) {
		t.Fatalf("unfinished after reopen: %v", got)
	}
	if s.Exists(alice) || !s.Exists(bob) {
		t.Fatal("Exists ignores the deletion mark")
	}
	if _, err := s.Resume(tok, ""); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("resume with a token of a deleted account: %v", err)
	}
	if _, err := s.Login([]byte("alice"), []byte("correct horse"), ""); !errors.Is(err, ErrUnknownUser) {
		t.Fatalf("login to a deleted account: %v", err)
	}
	if _, err := s.Name(alice); !errors.Is(err, ErrUnknownUser) {
		t.Fatalf("name of a deleted account: %v", err)
	}
	if _, err := s.Register([]byte("alice"), []byte("new password"), ""); !errors.Is(err, ErrNameTaken) {
		t.Fatalf("register the name while deleting: %v", err)
	}
	if err := s.BeginDelete(alice, nil); err != nil { // a second call: already begun
		t.Fatal(err)
	}
	for range 2 { // idempotent
		if err := s.FinishDelete(alice); err != nil {
			t.Fatal(err)
		}
	}
	if done, err := s.DeletionDone(alice); !done || err != nil {
		t.Fatalf("deletion done: %v %v", done, err)
	}
	if _, err := s.LookupName([]byte("alice")); !errors.Is(err, ErrUnknownUser) {
		t.Fatalf("lookup of a deleted name: %v", err)
	}
	if _, err := s.Register([]byte("alice"), []byte("new password"), ""); !errors.Is(err, ErrNameTaken) {
		t.Fatalf("register the name during its hold: %v", err)
	}
	if err := s.FinishDelete(bob); err == nil {
		t.Fatal("FinishDelete of an account whose deletion never began succeeded")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		ui, err := s.Register([]byte("alice"), []byte("new password"), "")
		u := ui.User
		if err == nil {
			if u == alice {
				t.Fatal("the new account got the deleted account's id")
			}
			break
		}
		if !errors.Is(err, ErrNameTaken) || time.Now().After(deadline) {
			t.Fatalf("register after the hold: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	db.Close()
	s, db = openHold(t, dir, 300*time.Millisecond)
	if len(s.Deleting()) != 0 || s.Exists(alice) {
		t.Fatal("a finished deletion came back as unfinished")
	}
	if _, err := s.Login([]byte("alice"), []byte("new password"), ""); err != nil {
		t.Fatalf("login to the name's new account: %v", err)
	}
}
