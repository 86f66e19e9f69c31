package offline

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/store"
	"github.com/cockroachdb/pebble/v2"
)

// TestGroupStoredOnceStudy stores the same group messages two ways, once
// with the body stored once and a small entry per member (what chatd
// does) and once as a full copy per member, and reports sstable bytes per
// group message. Run with CHATD_GROUP_STUDY=1:
//
//	CHATD_GROUP_STUDY=1 go test ./internal/offline -run TestGroupStoredOnceStudy -v
func TestGroupStoredOnceStudy(t *testing.T) {
	optIn(t, "CHATD_GROUP_STUDY", "the study")
	const members, msgs = 256, 200
	memberIDs := make([]uint64, members)
	for i := range memberIDs {
		memberIDs[i] = uint64(1000 + i)
	}
	for _, c := range []struct {
		once, random bool
	}{{true, false}, {false, false}, {true, true}, {false, true}} {
		once := c.once
		bodies := corpus(3, msgs, c.random)
		in, rec, db := open(t, t.TempDir(), Config{Quota: 1 << 30})
		for i, body := range bodies {
			id := codec.MsgID{byte(i), byte(i >> 8), 7}
			if once {
				in.SubmitGroup(&tmsg{Group: 9, From: 1, ID: id, Body: body}, memberIDs)
			} else {
				for j, m := range memberIDs {
					// A copy per member: ids are per (sender, id), so each copy needs its own.
					id := codec.MsgID{byte(i), byte(i >> 8), 7, byte(j), byte(j >> 8)}
					in.Submit(&tmsg{To: m, From: 1, Group: 9, ID: id, Body: body})
				}
			}
		}
		if once {
			rec.wait(t, msgs) // one durable report per group message
		} else {
			rec.wait(t, msgs*members)
		}
		in.Close()
		if err := db.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := db.Compact(t.Context(), []byte{0}, []byte{0xff}, true); err != nil {
			t.Fatal(err)
		}
		var size int64
		for _, l := range db.Metrics().Levels {
			size += l.TablesSize
		}
		how := "a copy per member"
		if once {
			how = "body stored once"
		}
		if c.random {
			how += ", encrypted"
		} else {
			how += ", chat text"
		}
		t.Logf("%-30s %d members, %d messages of mean %d B: %8.0f B on disk per group message, %6.1f B per member",
			how, members, msgs, meanLen(bodies), float64(size)/msgs, float64(size)/msgs/members)
		db.Close()
	}
}

func meanLen(b [][]byte) int {
	n := 0
	for _, x := range b {
		n += len(x)
	}
	return n / len(b)
}

var _ = pebble.Sync
var _ = store.PrefixBody

// TestCountdownPartsRace finishes the parts of one group fan-out on many
// goroutines at once, as many lanes' syncers do, each with an error: under
// -race the first-error bookkeeping must not race, and the op reports
// durable once, with one of the errors.
func TestCountdownPartsRace(t *testing.T) {
	rec := newRecorder()
	in := &Inbox[int]{hooks: rec}
	m := &tmsg{}
	m.op = op[int]{kind: kindGroupFanout, msg: m, st: Stored{Entry: Entry{Kind: KindMessage}}}
	c := &countdown[int]{op: &m.op, in: in}
	const parts = 16
	c.n.Store(parts)
	errs := make([]error, parts)
	var wg sync.WaitGroup
	for i := range errs {
		errs[i] = fmt.Errorf("part %d failed", i)
		wg.Add(1)
		go func() { defer wg.Done(); c.part(errs[i]) }()
	}
	wg.Wait()
	got := rec.wait(t, 1)[0]
	if got.msg != m || got.Kind != KindMessage || m.Err == nil || !slices.Contains(errs, m.Err) {
		t.Fatalf("op %+v", got)
	}
	select {
	case again := <-rec.durable:
		t.Fatalf("reported durable twice: %+v", again)
	default:
	}
}
