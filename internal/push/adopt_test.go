package push

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Records a shard move writes straight into the database (a
// subscription and a due push of user 5, a due push of user 6 whose
// inbox is empty) are taken in by Recount and Adopt: user 5 gets the
// due push with its count, user 6 none and its due key goes; Forget
// makes Due ignore a user again.
func TestAdoptImportedRecords(t *testing.T) {
	f := newFixture(t, Config{Pending: func(u uint64) bool { return u == 5 }})
	d := f.recv.Device("moved")
	sub := Subscription{Device: 1, Created: 1, Endpoint: d.Endpoint, P256dh: d.P256dh, Auth: d.Auth}
	b := f.db.NewBatch()
	for _, u := range []uint64{5, 6} {
		b.Set(subKey(u, 1), encodeSub(&sub), nil)
		b.Set(userPrefix(PrefixDue, u), append(binary.BigEndian.AppendUint32(nil, 3), byte(UrgencyHigh)), nil)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if f.st.Has(5) {
		t.Fatal("the store saw the imported subscription before Recount")
	}
	if err := f.st.Recount([]uint64{5, 6, 5}); err != nil {
		t.Fatal(err)
	}
	if !f.st.Has(5) || !f.st.Has(6) || f.st.Users() != 2 {
		t.Fatalf("after Recount: has 5 %v, has 6 %v, %d users", f.st.Has(5), f.st.Has(6), f.st.Users())
	}
	if err := f.svc.Adopt([]uint64{5, 6}); err != nil {
		t.Fatal(err)
	}
	got, err := f.recv.Wait(1, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Device != "moved" || decode(t, got[0]).Count != 3 {
		t.Fatalf("adopted push %+v", got[0])
	}
	eventually(t, "the due keys to go", func() bool { return !f.dueKey(5) && !f.dueKey(6) })
	if n := len(f.recv.Pushes()); n != 1 {
		t.Fatalf("%d pushes, want 1 (user 6's inbox was empty)", n)
	}

	f.st.Forget(func(u uint64) bool { return u == 5 })
	if f.st.Has(5) || !f.st.Has(6) {
		t.Fatal("Forget forgot the wrong users")
	}
	f.svc.Due(5, UrgencyHigh)
	if f.dueKey(5) || f.svc.Stats().Opened != 1 {
		t.Fatalf("Due opened a window for a forgotten user (opened %d)", f.svc.Stats().Opened)
	}
}
