package offline

import (
	"testing"

	"github.com/chatd/chatd/codec"
)

// TestSeenFilter: every added pair is found for its day and the next,
// not two days on; few unseen pairs are taken for seen; a recycled slot
// forgets its old day.
func TestSeenFilter(t *testing.T) {
	s := newSeen(64 << 10)
	s.ready.Store(true)
	id := func(i int) *codec.MsgID { return &codec.MsgID{byte(i), byte(i >> 8), byte(i >> 16)} }
	const n = 50_000
	for i := 0; i < n; i++ {
		s.add(100, uint64(i%7), id(i))
	}
	for i := 0; i < n; i++ {
		if !s.mayHave(100, uint64(i%7), id(i)) || !s.mayHave(101, uint64(i%7), id(i)) {
			t.Fatalf("pair %d not found", i)
		}
	}
	false_ := 0
	for i := n; i < 2*n; i++ {
		if s.mayHave(100, uint64(i%7), id(i)) {
			false_++
		}
	}
	if false_ > n/10 {
		t.Fatalf("%d of %d unseen pairs taken for seen", false_, n)
	}
	s.add(103, 1, id(1)) // recycles day 100's slot
	if s.mayHave(101, 0, id(0)) {
		t.Fatal("a pair outlived the window")
	}
	s.ready.Store(false)
	if !s.mayHave(103, 9, id(n*3)) {
		t.Fatal("before the start-up scan every pair must be looked up")
	}
}
