//go:build !race

// The race detector's sync.Pool drops items at random, so allocation
// counts are only meaningful without it.

package offline

import (
	"testing"
	"time"

	"github.com/chatd/chatd/internal/store"
)

// quietHooks answers nothing: for counting what the inbox itself
// allocates.
type quietHooks struct{}

func (quietHooks) Applied([]*Stored)         {}
func (quietHooks) Durable([]*tmsg, []Done)   {}
func (quietHooks) LiveAcked([]*Message[int]) {}

// TestLiveRoundTripNoAlloc: a message delivered live and acknowledged,
// with its receipt folded into the answer (SENT_DELIVERED), allocates
// nothing in the inbox once warm: the message is recycled, and the list
// of acknowledged messages handed to Hooks.LiveAcked is pooled (it was
// one allocation per ACK).
func TestLiveRoundTripNoAlloc(t *testing.T) {
	db, err := store.Open(t.TempDir(), store.Options{CacheSize: 4 << 20, MemTableSize: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	in, err := Open[int](db, Config{LiveWait: time.Hour, SweepEvery: time.Hour}, quietHooks{})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	var last Stored
	push := func(e *Stored) bool { last = *e; return true }
	acked := make([]Acked, 1)
	round := func() {
		m := in.NewMessage()
		m.From, m.To, m.FoldReceipt = 1, 2, true
		m.Body = append(m.Body[:0], "hello"...)
		if !in.Deliver(m, push) {
			t.Fatal("not delivered live")
		}
		acked = acked[:1]
		acked[0] = liveAcked(last)
		if err := in.AckEntries(2, acked, push); err != nil {
			t.Fatal(err)
		}
	}
	for range 100 {
		round()
	}
	if n := testing.AllocsPerRun(1000, round); n != 0 {
		t.Errorf("%.0f allocations per message delivered live and acknowledged, want 0", n)
	}
}
