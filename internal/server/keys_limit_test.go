package server

import (
	"testing"
	"time"
)

func TestFetchLimiterWindow(t *testing.T) {
	l := newFetchLimiter(2, time.Minute)
	t0 := time.Unix(1000, 0)
	for i := range 2 {
		if ok, _ := l.allow(1, 2, t0.Add(time.Duration(i)*time.Second)); !ok {
			t.Fatalf("fetch %d refused", i+1)
		}
	}
	ok, wait := l.allow(1, 2, t0.Add(10*time.Second))
	if ok || wait != 50*time.Second {
		t.Fatalf("third fetch: %v, wait %v; want refused, 50s", ok, wait)
	}
	if ok, _ := l.allow(1, 3, t0.Add(10*time.Second)); !ok {
		t.Fatal("another target refused")
	}
	if ok, _ := l.allow(4, 2, t0.Add(10*time.Second)); !ok {
		t.Fatal("another requester refused")
	}
	if ok, _ := l.allow(1, 2, t0.Add(time.Minute)); !ok {
		t.Fatal("refused in the next window")
	}
	if ok, _ := newFetchLimiter(-1, time.Minute).allow(1, 2, t0); !ok {
		t.Fatal("no limit refused")
	}
}
