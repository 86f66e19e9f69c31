package offline

import (
	"sync"
	"testing"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/store"
)

// TestPurge: Purge empties a young inbox as if it had expired: each
// message's sender gets one expired receipt, group bodies are released,
// and a Gone user's receipts are dropped instead of stored, without
// holding back the deletes that wait for them.
func TestPurge(t *testing.T) {
	var mu sync.Mutex
	gone := map[uint64]bool{}
	in, rec, db := open(t, t.TempDir(), Config{Lanes: 3, TTL: time.Hour, Gone: func(u uint64) bool {
		mu.Lock()
		defer mu.Unlock()
		return gone[u]
	}})
	defer db.Close()
	defer in.Close()

	in.Submit(msg(1, 2, 1, "one to one"))
	in.SubmitGroup(&tmsg{Group: 9, From: 3, ID: codec.MsgID{2}, Body: []byte("to the group")}, []uint64{2})
	rec.wait(t, 2)
	mu.Lock()
	gone[3] = true // 3's receipt is dropped, 1's stored
	mu.Unlock()
	if err := in.Purge(2); err != nil {
		t.Fatal(err)
	}
	r := rec.wait(t, 1)[0]
	if r.Kind != KindReceipt || r.To != 1 || r.ReceiptKind != codec.ReceiptExpired || r.IDs.Len() != 1 || r.IDs.At(0) != (codec.MsgID{1}) {
		t.Fatalf("receipt %+v", r)
	}
	waitFor(t, func() bool { return countUser(t, in, 2) == 0 && countKeys(t, db, store.PrefixBody) == 0 })
	if n := countUser(t, in, 3); n != 0 {
		t.Fatalf("a gone user's inbox got %d receipts", n)
	}
	if n := countUser(t, in, 1); n != 1 {
		t.Fatalf("the sender's inbox holds %d entries, want its expired receipt", n)
	}
}
