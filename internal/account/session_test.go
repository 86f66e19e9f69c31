package account

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/store"
	"github.com/cockroachdb/pebble/v2"
)

// clock is a settable Config.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func openClocked(t *testing.T, dir string) (s *Store, c *clock, closeDB func()) {
	t.Helper()
	db, err := store.Open(dir, store.Options{CacheSize: 1 << 20, MemTableSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	closeDB = func() { once.Do(func() { db.Close() }) }
	t.Cleanup(closeDB)
	c = &clock{t: time.Now()}
	s, err = New(db, Config{Hashing: Hashing{Time: 1, MemoryKiB: 64}, Now: c.now,
		IdleExpiry: 24 * time.Hour, Grace: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return s, c, closeDB
}

func TestResumeRotatesWithGrace(t *testing.T) {
	s, c, _ := openClocked(t, t.TempDir())
	first, err := s.Register([]byte("alice"), []byte("correct horse"), "192.0.2.1:1000")
	if err != nil {
		t.Fatal(err)
	}
	second, err := s.Resume(first.Token, "192.0.2.2:2000")
	if err != nil || second.Token == first.Token || second.Session != first.Session || second.User != first.User {
		t.Fatalf("resume: %+v, %v", second, err)
	}
	// The WELCOME carrying second was lost: first still resumes within
	// the grace, and second, which nobody received, dies.
	c.add(30 * time.Second)
	third, err := s.Resume(first.Token, "192.0.2.2:2001")
	if err != nil || third.Session != first.Session {
		t.Fatalf("resume within grace: %+v, %v", third, err)
	}
	if _, err := s.Check(second.Token); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("the lost token still works: %v", err)
	}
	// The grace counts from the first rotation, not the second.
	c.add(31 * time.Second)
	if _, err := s.Resume(first.Token, ""); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("a rotated-out token past its grace: %v", err)
	}
	fourth, err := s.Resume(third.Token, "192.0.2.3:3000")
	if err != nil {
		t.Fatal(err)
	}
	// Rotating again retires third at once after its grace; only fourth
	// and (for a minute) third remain: no token record is left behind.
	c.add(2 * time.Minute)
	if _, err := s.Check(third.Token); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("third after its grace: %v", err)
	}
	if n := tokenRecords(t, s, first.User); n != 2 { // fourth, and third until a rotation drops it
		t.Fatalf("%d token records, want 2", n)
	}
	list, err := s.Sessions(first.User)
	if err != nil || len(list) != 1 || list[0].ID != first.Session || list[0].Addr != "192.0.2.3:3000" {
		t.Fatalf("sessions: %+v, %v", list, err)
	}
	if _, err := s.Check(fourth.Token); err != nil {
		t.Fatal(err)
	}
}

// tokenRecords counts user's token records (scanning every token).
func tokenRecords(t *testing.T, s *Store, user uint64) int {
	t.Helper()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{store.PrefixToken}, UpperBound: []byte{store.PrefixToken + 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	n := 0
	for it.First(); it.Valid(); it.Next() {
		if v := it.Value(); len(v) >= 8 && binary.BigEndian.Uint64(v) == user {
			n++
		}
	}
	return n
}

func TestSessionsIdleExpiry(t *testing.T) {
	s, c, _ := openClocked(t, t.TempDir())
	a, _ := s.Register([]byte("alice"), []byte("correct horse"), "")
	c.add(20 * time.Hour)
	b, _ := s.Login([]byte("alice"), []byte("correct horse"), "")
	c.add(5 * time.Hour) // a is idle 25 h, b 5 h
	if _, err := s.Resume(a.Token, ""); !errors.Is(err, ErrTokenExpired) || !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("an idle session's token: %v", err)
	}
	if _, err := s.Resume(b.Token, ""); err != nil {
		t.Fatal(err)
	}
	// Seen at the end of a connection restarts the idle time.
	c.add(20 * time.Hour)
	if err := s.Seen(b.User, b.Session); err != nil {
		t.Fatal(err)
	}
	c.add(20 * time.Hour)
	list, err := s.Sessions(b.User)
	if err != nil || len(list) != 1 || list[0].ID != b.Session {
		t.Fatalf("sessions: %+v, %v", list, err)
	}
	c.add(5 * time.Hour)
	if list, err := s.Sessions(b.User); err != nil || len(list) != 0 {
		t.Fatalf("sessions after b went idle: %+v, %v", list, err)
	}
}

func TestEndSessionAndLabel(t *testing.T) {
	dir := t.TempDir()
	s, c, closeDB := openClocked(t, dir)
	phone, _ := s.Register([]byte("alice"), []byte("correct horse"), "198.51.100.7:1")
	c.add(time.Second)
	laptop, _ := s.Login([]byte("alice"), []byte("correct horse"), "203.0.113.9:2")
	if err := s.Label(phone.User, phone.Session, []byte("phone")); err != nil {
		t.Fatal(err)
	}
	list, err := s.Sessions(phone.User)
	if err != nil || len(list) != 2 || list[0].ID != laptop.Session || list[1].ID != phone.Session ||
		string(list[1].Label) != "phone" || list[1].Addr != "198.51.100.7:1" {
		t.Fatalf("sessions, most recent first: %+v, %v", list, err)
	}
	if err := s.EndSession(phone.User, phone.Session); err != nil {
		t.Fatal(err)
	}
	if err := s.EndSession(phone.User, phone.Session); !errors.Is(err, ErrUnknownSession) {
		t.Fatalf("ending it twice: %v", err)
	}
	if err := s.EndSession(phone.User+1, laptop.Session); !errors.Is(err, ErrUnknownSession) {
		t.Fatalf("another user's session: %v", err)
	}
	if _, err := s.Resume(phone.Token, ""); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("an ended session's token: %v", err)
	}
	// LOGOUT ends the session of the token, whichever of its tokens.
	next, err := s.Resume(laptop.Token, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke(laptop.User, laptop.Token); err != nil { // the token in its grace
		t.Fatal(err)
	}
	if _, err := s.Check(next.Token); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("LOGOUT left the session's current token: %v", err)
	}
	// What is left survives a reopen.
	again, _ := s.Login([]byte("alice"), []byte("correct horse"), "192.0.2.9:9")
	closeDB()
	s2 := openStore(t, dir)
	if list, err := s2.Sessions(again.User); err != nil || len(list) != 1 || list[0].ID != again.Session {
		t.Fatalf("sessions after reopen: %+v, %v", list, err)
	}
	if _, err := s2.Resume(again.Token, ""); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkResume is one RESUME's store work: a lookup of the token, the
// session's read and a synced batch that rotates the token.
func BenchmarkResume(b *testing.B) {
	db, err := store.Open(b.TempDir(), store.Options{CacheSize: 8 << 20, MemTableSize: 8 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	s, err := New(db, Config{Hashing: Hashing{Time: 1, MemoryKiB: 64}})
	if err != nil {
		b.Fatal(err)
	}
	is, err := s.Register([]byte("alice"), []byte("correct horse"), "")
	if err != nil {
		b.Fatal(err)
	}
	tok := is.Token
	for b.Loop() {
		next, err := s.Resume(tok, "192.0.2.1:1")
		if err != nil {
			b.Fatal(err)
		}
		tok = next.Token
	}
}

// BenchmarkResumeParallel: many users resuming at once share fsyncs
// (Pebble's group commit), as a reconnect storm does.
func BenchmarkResumeParallel(b *testing.B) {
	db, err := store.Open(b.TempDir(), store.Options{CacheSize: 8 << 20, MemTableSize: 8 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	s, err := New(db, Config{Hashing: Hashing{Time: 1, MemoryKiB: 64}, MaxQueued: 64}) // the registrations at the start
	if err != nil {
		b.Fatal(err)
	}
	var mu sync.Mutex
	n := 0
	b.SetParallelism(32)
	b.RunParallel(func(pb *testing.PB) {
		mu.Lock()
		n++
		name := []byte(fmt.Sprintf("user%d", n))
		mu.Unlock()
		is, err := s.Register(name, []byte("correct horse"), "")
		if err != nil {
			b.Error(err)
			return
		}
		tok := is.Token
		for pb.Next() {
			next, err := s.Resume(tok, "192.0.2.1:1")
			if err != nil {
				b.Error(err)
				return
			}
			tok = next.Token
		}
	})
}

// TestTokenNamesItsSession: a token names its user and session, so a
// RESUME finds the session without the token's own record; a token from
// before (random after the user id) is still found through its record;
// and a token that claims another user's session, or a session that
// does not hold it, is refused.
func TestTokenNamesItsSession(t *testing.T) {
	s, _, _ := openClocked(t, t.TempDir())
	alice, err := s.Register([]byte("alice"), []byte("correct horse"), "")
	if err != nil {
		t.Fatal(err)
	}
	if TokenUser(alice.Token) != alice.User || tokenSessionID(alice.Token) != alice.Session {
		t.Fatalf("token %x names user %d session %d, want %d and %d", alice.Token,
			TokenUser(alice.Token), tokenSessionID(alice.Token), alice.User, alice.Session)
	}
	// Without its record the token still resumes: the session was found
	// from the token alone.
	h := sha256.Sum256(alice.Token[:])
	if err := s.db.Delete(append([]byte{store.PrefixToken}, h[:]...), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	next, err := s.Resume(alice.Token, "")
	if err != nil || next.Session != alice.Session {
		t.Fatalf("resume without the token's record: %+v, %v", next, err)
	}

	// A token of the old layout: the user id, then 24 random bytes, found
	// by its record only.
	var old codec.Token
	binary.BigEndian.PutUint64(old[:8], alice.User)
	for i := 8; i < len(old); i++ {
		old[i] = byte(0xa0 + i)
	}
	oh := sha256.Sum256(old[:])
	b := s.db.NewBatch()
	v := binary.BigEndian.AppendUint64(nil, alice.User)
	v = binary.BigEndian.AppendUint64(v, s.nowMs())
	v = binary.BigEndian.AppendUint64(v, alice.Session)
	b.Set(append([]byte{store.PrefixToken}, oh[:]...), v, nil)
	r, err := s.readSession(alice.User, alice.Session)
	if err != nil || r == nil {
		t.Fatalf("read session: %v", err)
	}
	r.current, r.prev = oh, [32]byte{}
	b.Set(sessionKey(alice.User, alice.Session), r.encode(), nil)
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	rotated, err := s.Resume(old, "")
	if err != nil || rotated.Session != alice.Session || tokenSessionID(rotated.Token) != alice.Session {
		t.Fatalf("resume with an old token: %+v, %v", rotated, err)
	}

	// Claims that do not hold: bob's session id under alice's user id, and
	// alice's session with bytes no session was given.
	bob, err := s.Register([]byte("bob"), []byte("correct horse"), "")
	if err != nil {
		t.Fatal(err)
	}
	forged := bob.Token
	binary.BigEndian.PutUint64(forged[:8], alice.User)
	if _, err := s.Resume(forged, ""); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("bob's token under alice's id: %v", err)
	}
	guess := rotated.Token
	guess[31] ^= 1
	if _, err := s.Resume(guess, ""); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("a token one bit off: %v", err)
	}
	if _, err := s.Check(rotated.Token); err != nil {
		t.Fatalf("the real token after the refusals: %v", err)
	}
	// LOGOUT with a token that names the session ends it.
	if err := s.Revoke(alice.User, rotated.Token); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Resume(rotated.Token, ""); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("resume after revoke: %v", err)
	}
}
