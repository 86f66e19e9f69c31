package ratchet

import (
	"fmt"
	mrand "math/rand/v2"
	"testing"
)

type flight struct {
	msg       []byte
	pt        string
	delivered bool
}

// TestRandomSchedules runs conversations under random schedules of sends,
// drops, reordered deliveries and duplicates. Every first delivery of a
// message must decrypt to what was sent, every duplicate must fail without
// changing the receiver, and the two sides must keep talking throughout.
func TestRandomSchedules(t *testing.T) { testRandomSchedules(t, newPair) }

// TestRandomSchedulesHE runs the same schedules over header-encrypted
// sessions.
func TestRandomSchedulesHE(t *testing.T) { testRandomSchedules(t, newPairHE) }

func testRandomSchedules(t *testing.T, pair func(testing.TB, uint64, Config) (*State, *State)) {
	seeds := 60
	if testing.Short() {
		seeds = 10
	}
	var total scheduleStats
	for seed := range uint64(seeds) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			st := runSchedule(t, seed, pair)
			total.got += st.got
			total.dups += st.dups
			total.dropped += st.dropped
			total.skippedUsed += st.skippedUsed
		})
	}
	// The schedules must have exercised each path the test is about.
	if total.got == 0 || total.dups == 0 || total.dropped == 0 || total.skippedUsed == 0 {
		t.Fatalf("schedules too tame: %+v", total)
	}
}

type scheduleStats struct{ got, dups, dropped, skippedUsed int }

func runSchedule(t *testing.T, seed uint64, pair func(testing.TB, uint64, Config) (*State, *State)) scheduleStats {
	rng := mrand.New(mrand.NewPCG(seed, 0xd0b1e))
	a, b := pair(t, seed, Config{})
	parties := [2]*State{a, b}
	var queues [2][]*flight // queues[i]: messages on their way to party i
	sent, got, dups, dropped, skippedUsed := 0, 0, 0, 0, 0
	for step := range 400 {
		switch r := rng.IntN(10); {
		case r < 4: // send
			from := rng.IntN(2)
			if !parties[from].hasCKs {
				from = 0 // Bob cannot speak first
			}
			pt := fmt.Sprintf("%d:%d:%d", seed, step, from)
			m, err := parties[from].Encrypt([]byte(pt))
			if err != nil {
				t.Fatalf("step %d: encrypt: %v", step, err)
			}
			sent++
			if rng.IntN(8) == 0 {
				dropped++
				continue
			}
			queues[1-from] = append(queues[1-from], &flight{msg: m, pt: pt})
		default: // deliver something, anything in flight, in any order
			to := rng.IntN(2)
			q := queues[to]
			if len(q) == 0 {
				continue
			}
			i := rng.IntN(len(q))
			f := q[i]
			if f.delivered {
				dups++
				mustFailUnchanged(t, parties[to], f.msg)
			} else {
				before := parties[to].Skipped()
				mustDecrypt(t, parties[to], f.msg, f.pt)
				if parties[to].Skipped() < before {
					skippedUsed++
				}
				f.delivered = true
				got++
			}
			if f.delivered && rng.IntN(4) != 0 {
				// Usually the network forgets it; sometimes it keeps a
				// copy to duplicate later.
				queues[to] = append(q[:i], q[i+1:]...)
			}
		}
	}
	// Flush: everything still in flight arrives, in a shuffled order.
	for to := range 2 {
		q := queues[to]
		rng.Shuffle(len(q), func(i, j int) { q[i], q[j] = q[j], q[i] })
		for _, f := range q {
			if f.delivered {
				mustFailUnchanged(t, parties[to], f.msg)
				continue
			}
			mustDecrypt(t, parties[to], f.msg, f.pt)
			got++
		}
	}
	if got+dropped != sent {
		t.Fatalf("sent %d, decrypted %d, dropped %d", sent, got, dropped)
	}
	return scheduleStats{got, dups, dropped, skippedUsed}
}
