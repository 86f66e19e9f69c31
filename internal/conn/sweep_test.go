package conn

import (
	"testing"
	"time"
)

// TestIdlePassCadence: the pass over every connection runs every
// max(SweepInterval, Keepalive/64), never later than that.
func TestIdlePassCadence(t *testing.T) {
	for _, c := range []struct {
		keep, sweep time.Duration
		want        int
	}{
		{3 * time.Minute, 250 * time.Millisecond, 11}, // 2.75 s <= 2.81 s
		{time.Second, 250 * time.Millisecond, 1},
		{64 * time.Second, time.Second, 1},
		{18 * time.Hour, 250 * time.Millisecond, 4050},
	} {
		got := idleEvery(c.keep, c.sweep)
		if got != c.want || time.Duration(got)*c.sweep > max(c.sweep, c.keep/64) {
			t.Errorf("keepalive %v, sweep %v: every %d ticks, want %d", c.keep, c.sweep, got, c.want)
		}
	}
}

// TestAuthQueue: the queue hands back, in accept order, the connections
// past the auth deadline that neither authenticated nor closed, forgets
// those that did, and keeps the ones still within it.
func TestAuthQueue(t *testing.T) {
	var q authQueue[int]
	mk := func(opened uint32, state uint32) *Conn[int] {
		c := &Conn[int]{opened: opened}
		c.state.Store(state)
		q.add(c)
		return c
	}
	late1 := mk(0, 0)
	mk(10, stateAuthed)
	mk(20, stateClosed)
	late2 := mk(30, statePreamble)
	young := mk(900, 0)
	got := q.expired(nil, 1000, 500)
	if len(got) != 2 || got[0] != late1 || got[1] != late2 {
		t.Fatalf("expired %v, want the two unauthenticated ones past the deadline", got)
	}
	if len(q.q)-q.head != 1 || q.q[q.head] != young {
		t.Fatalf("queue keeps %d, want only the young one", len(q.q)-q.head)
	}
	if got := q.expired(nil, 1000, 500); len(got) != 0 {
		t.Fatalf("expired again: %v", got)
	}
	if got := q.expired(nil, 1401, 500); len(got) != 1 || got[0] != young {
		t.Fatalf("the young one past its deadline: %v", got)
	}
}
