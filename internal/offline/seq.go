package offline

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/chatd/chatd/internal/store"
	"github.com/cockroachdb/pebble/v2"
)

// seqAlloc hands out inbox sequence numbers from one counter shared by all
// inboxes. A global counter keeps every inbox's seqs increasing without a
// per-user counter in memory or on disk. To survive restarts without a
// write per message, it reserves blocks: the high-water mark on disk is
// always above every seq handed out, and a restart resumes from it,
// skipping the unused rest of the last block (2^64 is plenty).
type seqAlloc struct {
	env env
	mu  sync.Mutex
	cur uint64 // next seq to hand out
	hwm uint64 // persisted: every seq handed out is below it
}

const seqBlock = 1 << 20

var metaSeq = []byte{store.PrefixMeta, 's', 'e', 'q'}

func newSeqAlloc(e env) (*seqAlloc, error) {
	a := &seqAlloc{env: e, cur: 1}
	v, closer, err := e.Get(metaSeq)
	switch {
	case err == nil:
		if len(v) >= 8 {
			a.cur = binary.BigEndian.Uint64(v)
		}
		closer.Close()
	case !errors.Is(err, pebble.ErrNotFound):
		return nil, fmt.Errorf("offline: read seq mark: %w", err)
	}
	a.hwm = a.cur
	return a, nil
}

// next returns the first of n consecutive seqs.
func (a *seqAlloc) next(n int) (uint64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	first := a.cur
	if first+uint64(n) > a.hwm {
		// Reserve the next block before handing any of it out.
		hwm := first + uint64(n) + seqBlock
		if err := a.env.SetSync(metaSeq, binary.BigEndian.AppendUint64(nil, hwm)); err != nil {
			return 0, fmt.Errorf("offline: reserve seqs: %w", err)
		}
		a.hwm = hwm
	}
	a.cur += uint64(n)
	return first, nil
}
