package block

import (
	"errors"
	"slices"
	"testing"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/store"
	"github.com/cockroachdb/pebble/v2"
)

func open(t *testing.T, dir string, max int) (*Store, *pebble.DB) {
	t.Helper()
	db, err := store.Open(dir, store.Options{CacheSize: 1 << 20, MemTableSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(db, max)
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	return s, db
}

func TestListsSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	s, db := open(t, dir, 0)
	must(t, s.Set(1, codec.ListBlocked, 2, true))
	must(t, s.Set(1, codec.ListBlocked, 3, true))
	must(t, s.Set(1, codec.ListBlocked, 3, false))
	must(t, s.Set(1, codec.ListContacts, 4, true))
	must(t, s.SetAddsFrom(1, codec.AddsFromContacts))
	must(t, s.Set(5, codec.ListBlocked, 1, true))
	db.Close()

	s, db = open(t, dir, 0)
	defer db.Close()
	if got := s.List(1, codec.ListBlocked); !slices.Equal(got, []uint64{2}) {
		t.Fatalf("blocked after reopen: %v", got)
	}
	if got := s.List(1, codec.ListContacts); !slices.Equal(got, []uint64{4}) {
		t.Fatalf("contacts after reopen: %v", got)
	}
	if !s.Blocks(1, 2) || s.Blocks(1, 3) || s.Blocks(2, 1) {
		t.Fatal("Blocks disagrees with the stored list")
	}
	// Contacts only: 4 may add 1, 3 may not; 2 is blocked.
	if !s.AcceptsAdd(1, 4) || s.AcceptsAdd(1, 3) || s.AcceptsAdd(1, 2) {
		t.Fatal("AcceptsAdd does not follow the contacts-only setting")
	}
	// Everyone: anyone not blocked.
	if !s.AcceptsAdd(5, 3) || s.AcceptsAdd(5, 1) {
		t.Fatal("AcceptsAdd does not follow the block list")
	}

	must(t, s.Delete(1))
	must(t, s.Delete(1)) // idempotent
	if s.List(1, codec.ListBlocked) != nil || s.AddsFrom(1) != codec.AddsFromEveryone || s.Blocks(1, 2) {
		t.Fatal("lists left after Delete")
	}
	if !s.Blocks(5, 1) {
		t.Fatal("Delete of one user's lists touched another's")
	}
}

func TestListLimit(t *testing.T) {
	s, db := open(t, t.TempDir(), 2)
	defer db.Close()
	must(t, s.Set(1, codec.ListBlocked, 2, true))
	must(t, s.Set(1, codec.ListBlocked, 3, true))
	if err := s.Set(1, codec.ListBlocked, 4, true); !errors.Is(err, ErrListFull) {
		t.Fatalf("third block: %v, want ErrListFull", err)
	}
	must(t, s.Set(1, codec.ListBlocked, 3, true))  // already listed: no room needed
	must(t, s.Set(1, codec.ListContacts, 4, true)) // lists have separate limits
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// BenchmarkBlocks is the cost a SEND pays per check (two per SEND), from
// many goroutines at once, with 10,000 users holding lists.
func BenchmarkBlocks(b *testing.B) {
	db, err := store.Open(b.TempDir(), store.Options{CacheSize: 1 << 20, MemTableSize: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	s, err := Open(db, 0)
	if err != nil {
		b.Fatal(err)
	}
	for u := uint64(1); u <= 10_000; u++ {
		s.of(u).add(codec.ListBlocked, u+1)
	}
	b.RunParallel(func(pb *testing.PB) {
		u := uint64(0)
		for pb.Next() {
			u++
			owner := u % 20_000
			if s.Blocks(owner, owner+1) != (owner >= 1 && owner <= 10_000) {
				b.Fatal("wrong answer")
			}
		}
	})
}

// TestForgetAdopt: a shard move forgets the lists it moved away and the
// new home adopts those it wrote, settings included.
func TestForgetAdopt(t *testing.T) {
	s, db := open(t, t.TempDir(), 0)
	defer db.Close()
	must(t, s.Set(1, codec.ListBlocked, 2, true))
	must(t, s.Set(1, codec.ListContacts, 3, true))
	must(t, s.SetAddsFrom(1, codec.AddsFromContacts))
	must(t, s.Set(5, codec.ListBlocked, 1, true))
	s.Forget(func(owner uint64) bool { return owner == 1 })
	if s.Blocks(1, 2) || s.AddsFrom(1) != codec.AddsFromEveryone || !s.Blocks(5, 1) {
		t.Fatal("Forget left owner 1's lists or took owner 5's")
	}
	must(t, s.Adopt([]uint64{1}))
	if !s.Blocks(1, 2) || !slices.Equal(s.List(1, codec.ListContacts), []uint64{3}) || s.AddsFrom(1) != codec.AddsFromContacts {
		t.Fatal("Adopt did not load owner 1's lists from the store")
	}
	if o, ok := Owner(listKey(7, codec.ListBlocked, 9)); !ok || o != 7 {
		t.Fatalf("Owner: %d %v", o, ok)
	}
}
