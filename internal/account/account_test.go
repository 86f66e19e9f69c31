package account

import (
	"errors"
	"sync"
	"testing"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/store"
)

// triple is Register's or Login's answer as the three values the tests
// compare.
func triple(is Issued, err error) (uint64, codec.Token, error) { return is.User, is.Token, err }

func tokenOf(is Issued, err error) (codec.Token, error) { return is.Token, err }

func openStore(t *testing.T, dir string) *Store {
	t.Helper()
	db, err := store.Open(dir, store.Options{CacheSize: 1 << 20, MemTableSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := New(db, Config{Hashing: Hashing{Time: 1, MemoryKiB: 64}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRegisterLoginResume(t *testing.T) {
	s := openStore(t, t.TempDir())
	alice, tok, err := triple(s.Register([]byte("alice"), []byte("correct horse"), ""))
	if err != nil || alice != 1 {
		t.Fatalf("register: %d %v", alice, err)
	}
	bob, _, err := triple(s.Register([]byte("bob"), []byte("battery staple"), ""))
	if err != nil || bob != 2 {
		t.Fatalf("register bob: %d %v", bob, err)
	}
	if _, _, err := triple(s.Register([]byte("alice"), []byte("whatever123"), "")); !errors.Is(err, ErrNameTaken) {
		t.Fatalf("duplicate name: %v", err)
	}
	for _, bad := range []string{"Al", "Alice", "-x-", "a b c", "toolongtoolongtoolongtoolongtoolong"} {
		if _, _, err := triple(s.Register([]byte(bad), []byte("password1"), "")); !errors.Is(err, ErrInvalidName) {
			t.Errorf("name %q: %v", bad, err)
		}
	}
	if _, _, err := triple(s.Register([]byte("carol"), []byte("short"), "")); !errors.Is(err, ErrInvalidPassword) {
		t.Errorf("short password: %v", err)
	}
	if _, _, err := triple(s.Login([]byte("alice"), []byte("wrong horse"), "")); !errors.Is(err, ErrWrongPassword) {
		t.Errorf("wrong password: %v", err)
	}
	if _, _, err := triple(s.Login([]byte("nobody"), []byte("correct horse"), "")); !errors.Is(err, ErrUnknownUser) {
		t.Errorf("unknown user: %v", err)
	}
	u, tok2, err := triple(s.Login([]byte("alice"), []byte("correct horse"), ""))
	if err != nil || u != alice || tok2 == tok {
		t.Fatalf("login: %d %v", u, err)
	}
	for _, tk := range [][32]byte{tok, tok2} {
		if u, err := s.Check(tk); err != nil || u != alice {
			t.Fatalf("resume: %d %v", u, err)
		}
	}
	if err := s.Revoke(alice, tok); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Check(tok); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("revoked token still works: %v", err)
	}
	if name, err := s.Name(bob); err != nil || string(name) != "bob" {
		t.Fatalf("name: %q %v", name, err)
	}
	if !s.Exists(bob) || s.Exists(3) || s.Exists(0) {
		t.Fatal("Exists is wrong")
	}
}

func TestPasswordChangeRevokesAllTokens(t *testing.T) {
	s := openStore(t, t.TempDir())
	u, t1, _ := triple(s.Register([]byte("alice"), []byte("correct horse"), ""))
	_, t2, _ := triple(s.Login([]byte("alice"), []byte("correct horse"), ""))
	r, err := s.Resume(t1, "") // t1 stays in its grace beside its successor
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tokenOf(s.ChangePassword(u, []byte("nope nope"), []byte("new password"), "")); !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("change with wrong old password: %v", err)
	}
	t3, err := tokenOf(s.ChangePassword(u, []byte("correct horse"), []byte("new password"), ""))
	if err != nil {
		t.Fatal(err)
	}
	if n := tokenRecords(t, s, u); n != 1 {
		t.Fatalf("%d token records after a password change, want the new one only", n)
	}
	for _, tk := range [][32]byte{t1, t2, r.Token} {
		if _, err := s.Check(tk); !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("old token survived a password change: %v", err)
		}
	}
	if got, err := s.Check(t3); err != nil || got != u {
		t.Fatalf("new token: %v", err)
	}
	if _, _, err := triple(s.Login([]byte("alice"), []byte("correct horse"), "")); !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("old password still works: %v", err)
	}
	if _, _, err := triple(s.Login([]byte("alice"), []byte("new password"), "")); err != nil {
		t.Fatalf("new password: %v", err)
	}
}

func TestAccountsSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	db, _ := store.Open(dir, store.Options{})
	s, _ := New(db, Config{Hashing: Hashing{Time: 1, MemoryKiB: 64}})
	u, tok, err := triple(s.Register([]byte("alice"), []byte("correct horse"), ""))
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	s2 := openStore(t, dir)
	if got, err := s2.Check(tok); err != nil || got != u {
		t.Fatalf("token lost across reopen: %v", err)
	}
	if v, _, err := triple(s2.Register([]byte("bob"), []byte("battery staple"), "")); err != nil || v != u+1 {
		t.Fatalf("id after reopen = %d (%v), want %d", v, err, u+1)
	}
}

func TestHashingIsBounded(t *testing.T) {
	db, _ := store.Open(t.TempDir(), store.Options{})
	defer db.Close()
	s, _ := New(db, Config{Hashing: Hashing{Time: 3, MemoryKiB: 8 << 10}, MaxHashing: 1, MaxQueued: 1})
	var wg sync.WaitGroup
	var busy, ok int
	var mu sync.Mutex
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, _, err := triple(s.Register([]byte("user"+string(rune('a'+i))), []byte("password1"), ""))
			mu.Lock()
			defer mu.Unlock()
			if errors.Is(err, ErrBusy) {
				busy++
			} else if err == nil {
				ok++
			}
		}(i)
	}
	wg.Wait()
	if busy == 0 || ok == 0 {
		t.Fatalf("ok=%d busy=%d: expected some refused with ErrBusy", ok, busy)
	}
}

func TestRegisterInShards(t *testing.T) {
	db, err := store.Open(t.TempDir(), store.Options{CacheSize: 1 << 20, MemTableSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	testHashing := Hashing{Time: 1, MemoryKiB: 64}
	s, err := New(db, Config{Hashing: testHashing})
	if err != nil {
		t.Fatal(err)
	}
	// A node that was a single node first: its sequential ids stay valid.
	legacy, _, err := triple(s.Register([]byte("legacy"), []byte("password1"), ""))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]bool{legacy: true}
	for _, name := range []string{"alice", "bob", "carol", "dave"} {
		user, tok, err := triple(s.RegisterIn([]byte(name), []byte("password1"), ""))
		if err != nil {
			t.Fatal(err)
		}
		if int(user%Shards) != NameShard([]byte(name)) || seen[user] || !s.Exists(user) {
			t.Fatalf("%s got id %d (shard %d, name shard %d)", name, user, user%Shards, NameShard([]byte(name)))
		}
		seen[user] = true
		if TokenUser(tok) != user {
			t.Fatalf("token names user %d, want %d", TokenUser(tok), user)
		}
		if got, err := s.Check(tok); err != nil || got != user {
			t.Fatalf("resume: %d, %v", got, err)
		}
	}
	if s.Count() != 5 {
		t.Fatalf("count %d, want 5", s.Count())
	}
	// Ids survive a reopen, and the sequence skips ids the shards use.
	s2, err := New(db, Config{Hashing: testHashing})
	if err != nil {
		t.Fatal(err)
	}
	if s2.Count() != 5 {
		t.Fatalf("count after reopen %d", s2.Count())
	}
	for u := range seen {
		if !s2.Exists(u) {
			t.Fatalf("id %d lost at reopen", u)
		}
	}
	if s2.Exists(legacy + Shards*7 + 1) {
		t.Fatal("an id nobody was given exists")
	}
	u, _, err := triple(s2.RegisterIn([]byte("alice2"), []byte("password1"), ""))
	if err != nil || seen[u] {
		t.Fatalf("after reopen: %d, %v", u, err)
	}
}
