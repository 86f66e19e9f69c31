package account

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/chatd/chatd/internal/store"
	"github.com/cockroachdb/pebble/v2"
)

// Sweeping. An expired session is refused when its token is presented
// and deleted when next touched (session.go); one never touched again
// (a lost phone, an uninstalled app) would stay on disk, its tokens with
// it, for ever. SweepExpired deletes them in bounded steps: the caller
// (the server's sweeper) walks the user-token range with a cursor, a
// step at a time, and pauses between steps, so that a pass over millions
// of records never holds a user's lock or the store for long.
//
// A swept session's token is then unknown: RESUME answers it as it
// answers any dead token (ErrInvalidToken, ERROR 25), only without the
// detail that it expired.

// found is a session a sweep step found expired.
type found struct{ user, sid uint64 }

// SweepExpired examines at most limit records of the user-token range
// from the key from on (nil: its start) and deletes the sessions there
// that are past their idle expiry, with their tokens, for the users keep
// accepts (nil: all; a cluster node keeps the users it is home to). It
// returns where the next step starts, nil when it reached the range's
// end, and how many sessions it deleted.
//
// Each deletion re-reads its session under the user's lock, so a RESUME
// or a listing racing the sweep sees the session whole or not at all,
// and a session used since the scan stays. The deletions are not synced:
// one lost to a crash is swept again by the next pass.
func (s *Store) SweepExpired(from []byte, limit int, keep func(user uint64) bool) (next []byte, swept int, err error) {
	lo := []byte{store.PrefixUserTokens}
	if from != nil {
		lo = from
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: []byte{store.PrefixUserTokens + 1}})
	if err != nil {
		return nil, 0, fmt.Errorf("account: sweep sessions: %w", err)
	}
	var expired []found
	now := s.nowMs()
	n := 0
	for it.First(); it.Valid() && n < max(limit, 1); it.Next() {
		n++
		k := it.Key()
		if len(k) != 17 {
			continue // not a session record (a format 2 token index key)
		}
		user, sid := binary.BigEndian.Uint64(k[1:]), binary.BigEndian.Uint64(k[9:])
		r, err := decodeSession(it.Value())
		if err != nil {
			// Left for a listing to report: a sweep that stopped here
			// would never reach the records after it.
			continue
		}
		if s.expired(r, now) && (keep == nil || keep(user)) {
			expired = append(expired, found{user, sid})
		}
	}
	if it.Valid() { // stopped at the limit: resume at this key
		next = append([]byte(nil), it.Key()...)
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return nil, 0, fmt.Errorf("account: sweep sessions: %w", err)
	}
	// In chunks, so that a chunk's users' locks are held for a few
	// reads and one small commit.
	for chunk := range slices.Chunk(expired, dropChunk) {
		n, err := s.dropExpired(chunk)
		swept += n
		if err != nil {
			return next, swept, err
		}
	}
	return next, swept, nil
}

// dropChunk is how many sessions one batch of a sweep deletes.
const dropChunk = 64

// dropExpired deletes the sessions found (in key order, so by user) that
// are still there and still expired, in one batch: their users' locks
// (stripes, taken in ascending order, as no other path holds two) are
// held from the re-read to the commit, so a RESUME, a listing or a Seen
// either comes before and is seen, or after and finds the session gone.
func (s *Store) dropExpired(found []found) (int, error) {
	var stripes []int
	for _, f := range found {
		stripes = append(stripes, int(f.user%uint64(len(s.userLocks))))
	}
	slices.Sort(stripes)
	stripes = slices.Compact(stripes)
	for _, i := range stripes {
		s.userLocks[i].Lock()
	}
	defer func() {
		for _, i := range stripes {
			s.userLocks[i].Unlock()
		}
	}()
	b := s.db.NewBatch()
	defer b.Close()
	now, n := s.nowMs(), 0
	for _, f := range found {
		r, err := s.readSession(f.user, f.sid)
		if err != nil {
			return 0, err
		}
		if r != nil && s.expired(r, now) {
			dropSession(b, f.user, f.sid, r)
			n++
		}
	}
	if n == 0 {
		return 0, nil
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return 0, fmt.Errorf("account: sweep sessions: %w", err)
	}
	return n, nil
}
