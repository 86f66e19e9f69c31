package account

import (
	"encoding/binary"
	"errors"
	"fmt"

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
	type found struct{ user, sid uint64 }
	var expired []found
	now := s.nowMs()
	n := 0
	for it.First(); it.Valid() && n < max(limit, 1); it.Next() {
		n++
		k := it.Key()
		if len(k) != 17 {
			continue // a token's index entry
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
	for _, f := range expired {
		ok, err := s.dropExpired(f.user, f.sid)
		if err != nil {
			return next, swept, err
		}
		if ok {
			swept++
		}
	}
	return next, swept, nil
}

// dropExpired deletes user's session sid if it is still there and still
// expired.
func (s *Store) dropExpired(user, sid uint64) (bool, error) {
	defer s.lockUser(user)()
	r, err := s.readSession(user, sid)
	if err != nil || r == nil || !s.expired(r, s.nowMs()) {
		return false, err
	}
	b := s.db.NewBatch()
	defer b.Close()
	dropSession(b, user, sid, r)
	if err := b.Commit(pebble.NoSync); err != nil {
		return false, fmt.Errorf("account: sweep session %x of user %d: %w", sid, user, err)
	}
	return true, nil
}
