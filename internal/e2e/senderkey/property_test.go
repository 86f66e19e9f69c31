package senderkey

import (
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"testing"
)

// TestRandomSchedules delivers one sender's messages to a receiver with
// random drops, reordering and duplicates, rotating the chain now and then:
// each first delivery decrypts unless its chain has been rotated out of
// the receiver's MaxChains, and each duplicate fails without changing the
// receiver.
func TestRandomSchedules(t *testing.T) {
	for seed := range uint64(30) {
		rng := mrand.New(mrand.NewPCG(seed, 0x5e1de))
		s := newGroupSender(t)
		r := receiverFor(t, s, Config{})
		type flight struct {
			msg       []byte
			pt        string
			gen       int
			delivered bool
		}
		gen := 0
		// deliver checks one first delivery; chains more than MaxChains
		// rotations old are gone.
		deliver := func(f *flight) {
			if gen-f.gen >= int(DefaultConfig.MaxChains) {
				if err := failUnchanged(t, r, f.msg); !errors.Is(err, ErrNoState) {
					t.Fatalf("message on a dropped chain: %v", err)
				}
				return
			}
			decrypt(t, r, f.msg, f.pt)
		}
		var q []*flight
		dups := 0
		for step := range 300 {
			switch n := rng.IntN(20); {
			case n == 0: // rotate and redistribute
				if err := s.Rotate(); err != nil {
					t.Fatal(err)
				}
				if err := r.Process(s.Distribution()); err != nil {
					t.Fatal(err)
				}
				gen++
			case n < 9:
				pt := fmt.Sprint(seed, ":", step)
				m := encrypt(t, s, pt)
				if rng.IntN(6) != 0 { // else dropped
					q = append(q, &flight{msg: m, pt: pt, gen: gen})
				}
			default:
				if len(q) == 0 {
					continue
				}
				i := rng.IntN(len(q))
				f := q[i]
				if f.delivered {
					failUnchanged(t, r, f.msg)
					dups++
				} else {
					deliver(f)
					f.delivered = true
				}
				if rng.IntN(3) != 0 {
					q = append(q[:i], q[i+1:]...)
				}
			}
		}
		for _, f := range q {
			if f.delivered {
				failUnchanged(t, r, f.msg)
				continue
			}
			deliver(f)
		}
		if dups == 0 {
			t.Fatalf("seed %d: no duplicates delivered", seed)
		}
	}
}
