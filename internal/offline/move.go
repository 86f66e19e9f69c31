package offline

import (
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/store"
)

// Moving inboxes between nodes (a cluster's shard move). The source stops
// taking writes for the moving users, waits for its lanes (Barrier),
// copies their records with each group message's entry made whole
// (Materialize: the body it refers to is stored once for all of this
// node's members, under a reference the destination may use for another
// body), and the destination takes the records into its store and then
// into its lanes' state (Adopt). The source's copy of a body its moved
// members referred to stays until its hour expires.

// kindBarrier runs in every lane: done once every op queued before it is.
// Its batch writes metaBarrier, so that it is synced after the lane's
// earlier batches like any other.
const kindBarrier Kind = 106

var metaBarrier = []byte{store.PrefixMeta, 'b', 'a', 'r', 'r', 'i', 'e', 'r'}

// Barrier returns once every op queued before it, in every lane, is
// durable (or failed).
func (in *Inbox[S]) Barrier() error {
	var wg sync.WaitGroup
	var first error
	var mu sync.Mutex
	for _, l := range in.lanes {
		wg.Add(1)
		o := &op[S]{kind: kindBarrier, done: func(*op[S]) { wg.Done() }}
		if err := l.add(o, true); err != nil {
			wg.Done()
			mu.Lock()
			first = err
			mu.Unlock()
		}
	}
	wg.Wait()
	return first
}

// Materialize returns an inbox entry's value as it should move: a group
// message's reference replaced by its body, as a message naming its group
// (its DELIVER and its receipts are the same). Other entries move as they
// are. ok is false for a group message whose body expired.
func (in *Inbox[S]) Materialize(key, value []byte) (out []byte, ok bool, err error) {
	if len(key) != 17 || key[0] != store.PrefixInbox {
		return nil, false, fmt.Errorf("%w: not an inbox key", ErrCorrupt)
	}
	var e Entry
	if err := DecodeEntry(binary.BigEndian.Uint64(key[9:]), value, &e); err != nil {
		return nil, false, err
	}
	if e.Kind != KindGroupMessage {
		return value, true, nil
	}
	body, closer, err := in.env.Get(bodyKey(e.Ref, 0))
	if err != nil {
		return nil, false, nil // expired with its hour
	}
	defer closer.Close()
	if len(body) < entryHeader+32 {
		return nil, false, fmt.Errorf("%w: group body", ErrCorrupt)
	}
	e.Kind, e.Body = KindMessage, body[entryHeader+32:]
	return e.encode(nil), true, nil
}

// Adopt takes imported records (keys and values as Materialize and the
// store's layout give them, already written) into the lanes' state: the
// seq counter moves past every imported seq, the dedup window learns the
// imported message ids, and each inbox's count grows by its entries.
func (in *Inbox[S]) Adopt(keys, values [][]byte) error {
	var maxSeq uint64
	counts := map[uint64]tally{}
	for i, k := range keys {
		switch {
		case len(k) == 17 && k[0] == store.PrefixInbox:
			user, seq := binary.BigEndian.Uint64(k[1:]), binary.BigEndian.Uint64(k[9:])
			maxSeq = max(maxSeq, seq)
			counts[user] = counts[user].add(tally{1, int64(len(values[i]))})
		case len(k) == 29 && k[0] == store.PrefixDedup && len(values[i]) >= 16:
			var id codec.MsgID
			copy(id[:], k[13:])
			day, sender := binary.BigEndian.Uint32(k[1:]), binary.BigEndian.Uint64(k[5:])
			in.seen.add(day, sender, &id)
			maxSeq = max(maxSeq, binary.BigEndian.Uint64(values[i][8:]))
		}
	}
	if err := in.seq.atLeast(maxSeq + 1); err != nil {
		return err
	}
	byLane := map[*lane[S]]map[uint64]tally{}
	var total int64
	for u, t := range counts {
		l := in.lane(u)
		if byLane[l] == nil {
			byLane[l] = map[uint64]tally{}
		}
		byLane[l][u] = t
		total += int64(t.n)
	}
	in.entries.Add(total)
	for l, c := range byLane {
		if err := l.add(&op[S]{kind: kindAdopt, counts: c}, true); err != nil {
			return err
		}
	}
	return nil
}

// Disown takes deleted records (a copy of a shard this node does not
// own, left by a move that failed) out of the lanes' state: each inbox's
// count shrinks by its deleted entries, and its bytes by their values'
// lengths (sizes[i] is keys[i]'s). Keys other than entries are ignored.
func (in *Inbox[S]) Disown(keys [][]byte, sizes []int) error {
	byLane := map[*lane[S]]map[uint64]tally{}
	var total int64
	for i, k := range keys {
		if len(k) != 17 || k[0] != store.PrefixInbox {
			continue
		}
		u := binary.BigEndian.Uint64(k[1:])
		l := in.lane(u)
		if byLane[l] == nil {
			byLane[l] = map[uint64]tally{}
		}
		byLane[l][u] = byLane[l][u].add(tally{-1, -int64(sizes[i])})
		total++
	}
	in.entries.Add(-total)
	for l, c := range byLane {
		if err := l.add(&op[S]{kind: kindAdopt, counts: c}, true); err != nil {
			return err
		}
	}
	return nil
}

// kindAdopt runs in a lane: imported entries join its inboxes' counts.
const kindAdopt Kind = 107

// adopt adds imported entries to the lane's counts. Before the start-up
// count arrives, quota checks count the inbox's keys, imported ones
// included, and the start-up count has them too or not: it is taken
// from a snapshot, so depth, which holds changes since, must have them
// only if the snapshot does not. The snapshot was taken at open, before
// any import: add them.
func (l *lane[S]) adopt(counts map[uint64]tally) {
	for u, t := range counts {
		l.depth[u] = l.depth[u].add(t)
	}
}

// atLeast moves the counter to at least seq, reserving as next does.
func (a *seqAlloc) atLeast(seq uint64) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if seq <= a.cur {
		return nil
	}
	if seq > a.hwm {
		hwm := seq + seqBlock
		if err := a.env.SetSync(metaSeq, binary.BigEndian.AppendUint64(nil, hwm)); err != nil {
			return fmt.Errorf("offline: reserve seqs: %w", err)
		}
		a.hwm = hwm
	}
	a.cur = seq
	return nil
}
