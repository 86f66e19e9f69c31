package offline

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/store"
)

// TestOutboxAndFanIn plays two nodes' inboxes: "home" keeps the group and
// users 1-9, "away" keeps users 10-19. A group message and a group event
// for members on both are stored on home with an outbox record naming
// away's members; FanOut hears of each once it is durable, in order;
// away's FanIn stores them (the body once), a second FanIn of the same
// items stores no message twice, and FanOutDone removes the record.
func TestOutboxAndFanIn(t *testing.T) {
	remote := func(u uint64) bool { return u >= 10 }
	var mu sync.Mutex
	var fanned []FanOut
	homeEnv, awayEnv := newMemEnv(), newMemEnv()
	home, rec := openMem(t, homeEnv, Config{Lanes: 3, Remote: remote, FanOut: func(f FanOut) {
		mu.Lock()
		fanned = append(fanned, f)
		mu.Unlock()
	}})
	away, awayRec := openMem(t, awayEnv, Config{Lanes: 3})

	const group = 4096 + 7
	members := []uint64{2, 3, 10, 11, 12}
	ev := GroupEvent{Group: group, Kind: codec.GroupCreated, Actor: 1, Name: []byte("g"), Users: codec.Users(1, 2, 3, 10, 11, 12)}
	if err := home.SubmitGroupEvent(ev, append([]uint64(nil), members...)); err != nil {
		t.Fatal(err)
	}
	m := &tmsg{Group: group, From: 1, ID: codec.MsgID{1}, Body: []byte("hello")}
	if err := home.SubmitGroup(m, append([]uint64(nil), members...)); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, 2)
	if m.Err != nil {
		t.Fatal(m.Err)
	}
	for _, u := range []uint64{2, 3} {
		if got := entries(t, home, u); len(got) != 2 {
			t.Fatalf("home member %d has %d entries, want 2", u, len(got))
		}
	}
	if got := entries(t, home, 10); len(got) != 0 {
		t.Fatalf("away member 10 has %d entries at home", len(got))
	}
	var pending []FanOut
	if err := home.Outbox(func(f FanOut) bool { pending = append(pending, f); return true }); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	got := append([]FanOut(nil), fanned...)
	mu.Unlock()
	if len(got) != 2 || len(pending) != 2 || got[0].Seq >= got[1].Seq {
		t.Fatalf("fanned out %d, outbox %d, want 2 each in order", len(got), len(pending))
	}
	for i := range got {
		if fmt.Sprint(got[i].Members) != "[10 11 12]" || string(got[i].Wire) != string(pending[i].Wire) || got[i].Seq != pending[i].Seq {
			t.Fatalf("fan-out %d: %+v, outbox: %+v", i, got[i], pending[i])
		}
	}

	// Away stores both, twice (a lost answer): one copy of each.
	for range 2 {
		done := make(chan error, 1)
		if err := away.FanIn(pending, func(err error) { done <- err }); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("FanIn never done")
		}
	}
	awayRec.wait(t, 2)
	for _, u := range []uint64{10, 11, 12} {
		es := entries(t, away, u)
		if len(es) != 3 { // the event twice (events have no id), the message once
			t.Fatalf("away member %d: %d entries, want 3", u, len(es))
		}
		if es[0].Kind != KindGroupEvent || es[1].Kind != KindGroupMessage || string(es[1].Body) != "hello" || es[1].From != 1 {
			t.Fatalf("away member %d: %+v", u, es[:2])
		}
	}
	if n := countMem(awayEnv, store.PrefixBody); n != 2 {
		t.Fatalf("away holds %d body keys, want 2 (the body once, and its count)", n)
	}
	for _, f := range pending {
		if err := home.FanOutDone(f.Seq); err != nil {
			t.Fatal(err)
		}
	}
	if n := countMem(homeEnv, store.PrefixOutbox); n != 0 {
		t.Fatalf("%d outbox records left", n)
	}
}

func countMem(e *memEnv, prefix byte) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for k := range e.kv {
		if k[0] == prefix {
			n++
		}
	}
	return n
}
