package group

import (
	"sync"
	"testing"

	"github.com/chatd/chatd/codec"
	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

func openMem(t *testing.T, fs vfs.FS) *pebble.DB {
	t.Helper()
	db, err := pebble.Open("", &pebble.Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// openStore opens a group store on a database in fs.
func openStore(t *testing.T, fs vfs.FS) (*pebble.DB, *Store) {
	t.Helper()
	db := openMem(t, fs)
	s, err := Open(db, 0)
	if err != nil {
		t.Fatal(err)
	}
	return db, s
}

// TestCreateIDsNotReusedAfterRestart creates groups concurrently, reopens
// the store and creates once more: the new group must get an id no
// earlier group used, so none of their member keys leak into it.
func TestCreateIDsNotReusedAfterRestart(t *testing.T) {
	fs := vfs.NewMem()
	db, s := openStore(t, fs)
	const workers, per = 16, 25
	var wg sync.WaitGroup
	ids := make(chan uint64, workers*per)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				g, err := s.Create(uint64(100+w), []byte("g"), []uint64{uint64(1000 + w*per + i)}, nil)
				if err != nil {
					t.Error(err)
					return
				}
				ids <- g.ID
			}
		}(w)
	}
	wg.Wait()
	close(ids)
	used := map[uint64]bool{}
	for id := range ids {
		if used[id] {
			t.Fatalf("id %d given twice", id)
		}
		used[id] = true
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db, s = openStore(t, fs)
	defer db.Close()
	g, err := s.Create(7, []byte("after restart"), []uint64{8}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if used[g.ID] {
		t.Fatalf("group id %d reused after restart", g.ID)
	}
	// Read it back from the store: exactly the two members given.
	s2, err := Open(db, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s2.Get(g.ID)
	if err != nil {
		t.Fatal(err)
	}
	got.Mu.RLock()
	defer got.Mu.RUnlock()
	if m := got.Members(); len(m) != 2 || m[0] != (codec.Member{User: 7, Role: codec.RoleAdmin}) || m[1].User != 8 {
		t.Fatalf("members of the new group: %+v", m)
	}
}

// TestCreateOutOfOrderCommit makes the create that chose the smaller id
// commit last, then reopens: the id after restart must still be new.
func TestCreateOutOfOrderCommit(t *testing.T) {
	fs := vfs.NewMem()
	db, s := openStore(t, fs)
	first, second := make(chan struct{}), make(chan struct{})
	s.testHookAssigned = func(id uint64) {
		if id == 1 {
			close(first)
			<-second // the create that chose id 2 commits first
		}
	}
	done := make(chan error)
	go func() {
		_, err := s.Create(10, []byte("one"), []uint64{11}, nil)
		done <- err
	}()
	<-first
	if _, err := s.Create(20, []byte("two"), []uint64{21}, nil); err != nil {
		t.Fatal(err)
	}
	close(second)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	db.Close()

	db, s = openStore(t, fs)
	defer db.Close()
	g, err := s.Create(30, []byte("three"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if g.ID <= 2 {
		t.Fatalf("group id %d reused after restart", g.ID)
	}
	s2, _ := Open(db, 0)
	got, err := s2.Get(g.ID)
	if err != nil {
		t.Fatal(err)
	}
	got.Mu.RLock()
	defer got.Mu.RUnlock()
	if got.Len() != 1 {
		t.Fatalf("new group %d has %+v: an old group's member keys leaked in", g.ID, got.Members())
	}
}
