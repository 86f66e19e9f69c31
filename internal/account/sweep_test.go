package account

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/chatd/chatd/internal/store"
)

// startSessions starts n sessions for user directly in the store (a
// LOGIN each, without the password hashing).
func startSessions(t *testing.T, s *Store, user uint64, n int) []Issued {
	t.Helper()
	b := s.db.NewBatch()
	defer b.Close()
	out := make([]Issued, n)
	for i := range out {
		is, err := s.startSession(b, user, "192.0.2.1:1")
		if err != nil {
			t.Fatal(err)
		}
		out[i] = is
	}
	if err := b.Commit(nil); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSweepExpired: a sweep deletes the sessions past their idle expiry
// (and their tokens) without their being touched, keeps the live ones
// and those of users it is told to leave, and does it in steps that each
// examine at most the limit's records, the cursor covering the range.
func TestSweepExpired(t *testing.T) {
	s, c, _ := openClocked(t, t.TempDir())
	old := startSessions(t, s, 7, 300)
	otherNode := startSessions(t, s, 8, 20) // a user this "node" is not home to
	c.add(20 * time.Hour)
	live := startSessions(t, s, 9, 5)
	c.add(5 * time.Hour) // the first two groups idle 25 h (expiry 24 h), live 5 h

	const limit = 64
	keep := func(user uint64) bool { return user != 8 }
	// A step of one record: it examines the first and stops at the second.
	first, n, err := s.SweepExpired(nil, 1, keep)
	if err != nil || n > 1 || first == nil {
		t.Fatalf("a step of one record: %x, %d, %v", first, n, err)
	}
	cursor := first
	total, steps := n, 1
	for {
		next, n, err := s.SweepExpired(cursor, limit, keep)
		if err != nil {
			t.Fatal(err)
		}
		steps++
		// Each session is 3 records (its own and two token index
		// entries at most): a step of 64 records deletes at most 64.
		if n > limit {
			t.Fatalf("a step of %d records deleted %d sessions", limit, n)
		}
		if next != nil && cursor != nil && bytes.Compare(next, cursor) <= 0 {
			t.Fatalf("the cursor went back: %x after %x", next, cursor)
		}
		total += n
		if next == nil {
			break
		}
		cursor = next
	}
	// 325 sessions with one token each: 650 records, of which a step may
	// delete some ahead of the cursor (a session's token index entries
	// sort apart from its record); the 325 session records and the 25
	// index entries left take 6 steps at least.
	if steps < (350+limit-1)/limit || steps > (650+limit-1)/limit {
		t.Fatalf("%d steps of %d records over 650", steps, limit)
	}
	if total != len(old) {
		t.Fatalf("swept %d sessions, want %d", total, len(old))
	}
	for _, is := range old {
		// Check tells an expired session from a missing one: these are
		// gone, tokens and all.
		if _, err := s.Check(is.Token); !errors.Is(err, ErrInvalidToken) || errors.Is(err, ErrTokenExpired) {
			t.Fatalf("a swept session's token: %v", err)
		}
	}
	if n := tokenRecords(t, s, 7); n != 0 {
		t.Fatalf("%d token index entries left of the swept user", n)
	}
	for _, is := range otherNode {
		if _, err := s.Check(is.Token); !errors.Is(err, ErrTokenExpired) {
			t.Fatalf("a session the sweep was told to leave: %v", err)
		}
	}
	for _, is := range live {
		if _, err := s.Resume(is.Token, ""); err != nil {
			t.Fatalf("a live session: %v", err)
		}
	}
	// A second pass finds nothing more to do.
	if next, n, err := s.SweepExpired(nil, 10_000, keep); err != nil || n != 0 || next != nil {
		t.Fatalf("second pass: %x, %d, %v", next, n, err)
	}
}

// TestSweepSparesSessionUsedMeanwhile: the sweep re-reads a session
// before deleting it, so one made live again between the scan and the
// deletion stays.
func TestSweepSparesSessionUsedMeanwhile(t *testing.T) {
	s, c, _ := openClocked(t, t.TempDir())
	is := startSessions(t, s, 7, 1)[0]
	c.add(25 * time.Hour)
	// The scan found it expired; then a connection's end recorded a use.
	if err := s.Seen(7, is.Session); err != nil {
		t.Fatal(err)
	}
	if n, err := s.dropExpired([]found{{7, is.Session}}); n != 0 || err != nil {
		t.Fatalf("dropExpired of a session used since: %d, %v", n, err)
	}
	if _, err := s.Check(is.Token); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkSweepPass is a whole pass, in steps of 512 records and no
// pauses, over 10,000 sessions of 10,000 users: all expired (the most
// work: a deletion each) or all live (a scan). It reports the mean step.
func BenchmarkSweepPass(b *testing.B) {
	const sessions = 10_000
	for _, expired := range []bool{true, false} {
		b.Run(map[bool]string{true: "expired", false: "live"}[expired], func(b *testing.B) {
			steps := 0
			for b.Loop() {
				b.StopTimer()
				db, err := store.Open(b.TempDir(), store.Options{CacheSize: 8 << 20, MemTableSize: 64 << 20})
				if err != nil {
					b.Fatal(err)
				}
				c := &clock{t: time.Now()}
				s, err := New(db, Config{Hashing: Hashing{Time: 1, MemoryKiB: 64}, Now: c.now, IdleExpiry: time.Hour})
				if err != nil {
					b.Fatal(err)
				}
				batch := db.NewBatch()
				for u := range uint64(sessions) {
					if _, err := s.startSession(batch, u+1, "192.0.2.1:1"); err != nil {
						b.Fatal(err)
					}
				}
				if err := batch.Commit(nil); err != nil {
					b.Fatal(err)
				}
				if expired {
					c.add(2 * time.Hour)
				}
				b.StartTimer()
				var cursor []byte
				swept := 0
				for {
					next, n, err := s.SweepExpired(cursor, 512, nil)
					if err != nil {
						b.Fatal(err)
					}
					steps++
					swept += n
					if cursor = next; next == nil {
						break
					}
				}
				b.StopTimer()
				if expired && swept != sessions {
					b.Fatalf("swept %d", swept)
				}
				db.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(steps)/1e6, "ms/step")
		})
	}
}
