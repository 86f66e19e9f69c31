package offline

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/store"
)

// TestExpiredNeverRead: once an entry outlives the TTL no read returns it,
// however long until the next sweep; the read that meets it settles it: a
// message's sender gets one expired receipt (naming the group and the
// member for a group message), a receipt or group event expires silently,
// group bodies are released, and repeated reads and a sweep on top
// produce nothing more.
func TestExpiredNeverRead(t *testing.T) {
	in, rec, db := open(t, t.TempDir(), Config{Lanes: 3, TTL: time.Hour})
	defer db.Close()
	defer in.Close()
	var skew atomic.Int64
	in.now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }

	in.Submit(msg(1, 2, 1, "one to one"))
	in.SubmitGroup(&tmsg{Group: 9, From: 1, ID: codec.MsgID{2}, Body: []byte("to the group")}, []uint64{2, 3})
	in.SubmitReceipt(Receipt{To: 2, Kind: codec.ReceiptRead, By: 5, IDs: codec.IDList(nil).AppendID(codec.MsgID{7})})
	rec.wait(t, 3)
	if n, _ := in.Count(2); n != 3 {
		t.Fatalf("%d entries before expiry", n)
	}

	skew.Store(int64(2 * time.Hour))
	for i := 0; i < 5; i++ {
		in.Read(2, 0, 100, func(e *Entry) bool { t.Fatalf("read an expired entry %+v", e); return false })
		in.Read(3, 0, 100, func(e *Entry) bool { t.Fatalf("read an expired entry %+v", e); return false })
	}
	type key struct {
		by, group uint64
	}
	got := map[key]codec.MsgID{}
	for len(got) < 3 {
		r := rec.wait(t, 1)[0]
		k := key{r.By, r.Group}
		if r.Kind != KindReceipt || r.To != 1 || r.ReceiptKind != codec.ReceiptExpired || r.IDs.Len() != 1 {
			t.Fatalf("receipt %+v", r)
		}
		if _, dup := got[k]; dup {
			t.Fatalf("two expired receipts for %+v", k)
		}
		got[k] = r.IDs.At(0)
	}
	if got[key{2, 0}] != (codec.MsgID{1}) || got[key{2, 9}] != (codec.MsgID{2}) || got[key{3, 9}] != (codec.MsgID{2}) {
		t.Fatalf("receipts %v", got)
	}
	waitFor(t, func() bool {
		return countUser(t, in, 2) == 0 && countUser(t, in, 3) == 0 && countKeys(t, db, store.PrefixBody) == 0
	})
	in.ExpireBefore(in.now().Add(-time.Hour))
	in.Read(2, 0, 100, func(*Entry) bool { return true })
	// Nothing more: user 1's inbox holds the three receipts, once each.
	waitFor(t, func() bool { return in.Expired() == 4 })
	if n, _ := in.Count(1); n != 3 {
		t.Fatalf("sender's inbox holds %d entries, want 3 expired receipts", n)
	}
	select {
	case op := <-rec.durable:
		t.Fatalf("more reported: %+v", op)
	default:
	}
}

// countUser counts user's inbox keys, expired or not.
func countUser(t *testing.T, in *Inbox[int], user uint64) int {
	return int(in.countInbox(user, 1<<30).n)
}
