package router

import (
	"sync"
	"testing"
)

type sess struct{ id int }

func TestSwapAndRemove(t *testing.T) {
	tb := NewWithShards[*sess](3)
	if len(tb.shards) != 4 {
		t.Fatalf("shards = %d, want 4 (rounded up)", len(tb.shards))
	}
	a, b := &sess{1}, &sess{2}
	if _, replaced := tb.Swap(7, a); replaced {
		t.Fatal("first login replaced something")
	}
	if old, replaced := tb.Swap(7, b); !replaced || old != a {
		t.Fatalf("second login: old=%v replaced=%v", old, replaced)
	}
	// The replaced session's logout must not remove the new one.
	if tb.Remove(7, a) {
		t.Fatal("stale session removed the live one")
	}
	if s, ok := tb.Lookup(7); !ok || s != b {
		t.Fatalf("lookup = %v, %v", s, ok)
	}
	if !tb.Remove(7, b) || tb.Len() != 0 {
		t.Fatal("remove failed")
	}
}

func TestConcurrentLogins(t *testing.T) {
	tb := NewWithShards[*sess](2)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				u := uint64(i % 50)
				s := &sess{g*10000 + i}
				tb.Swap(u, s)
				tb.Lookup(u)
				tb.Remove(u, s)
			}
		}(g)
	}
	wg.Wait()
	if n := tb.Len(); n > 50 {
		t.Fatalf("%d sessions left for 50 users", n)
	}
}

func TestLookupNoAlloc(t *testing.T) {
	tb := NewTable[*sess]()
	for u := uint64(0); u < 1000; u++ {
		tb.Swap(u, &sess{int(u)})
	}
	if n := testing.AllocsPerRun(1000, func() { tb.Lookup(500) }); n != 0 {
		t.Fatalf("Lookup allocates %v times", n)
	}
}

func BenchmarkLookupParallel(b *testing.B) {
	tb := NewTable[*sess]()
	for u := uint64(0); u < 100000; u++ {
		tb.Swap(u, &sess{int(u)})
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		u := uint64(0)
		for pb.Next() {
			u = (u + 7919) % 100000
			if _, ok := tb.Lookup(u); !ok {
				b.Fatal("missing")
			}
		}
	})
}
