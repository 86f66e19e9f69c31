package store

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// migrateSessions is format 1 -> 2. A format 1 token record is
//
//	'k' | sha256(token) -> user (8) | created (8)
//
// and format 2 adds the token's session, with a session record under the
// user's token index (the layout package account reads and writes, as of
// format 2; a later change to it is a migration of its own):
//
//	'k' | sha256(token)          -> user (8) | created (8) | session (8)
//	'K' | user (8) | session (8) -> | 1 | created (8) | last seen (8) | current sha256 (32) |
//	                                | previous sha256 (32) = 0 | previous until (8) = 0 | addr str8 = "" | label str8 = "" |
//
// Each token becomes a session whose id is the first 8 bytes of its hash
// (so a rerun after a crash writes the same records), created when the
// token was, and last seen now: an upgrade does not expire sessions whose
// last use the old layout never recorded.
func migrateSessions(db *pebble.DB, b *pebble.Batch) error {
	now := uint64(time.Now().UnixMilli())
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{PrefixToken}, UpperBound: []byte{PrefixToken + 1}})
	if err != nil {
		return err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		k, v := it.Key(), it.Value()
		if len(k) != 33 || len(v) != 16 {
			continue // a record already migrated, or not a token's
		}
		user, created := binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:])
		sid := binary.BigEndian.Uint64(k[1:])
		if sid == 0 {
			sid = 1 // 0 is no session id
		}
		nv := binary.BigEndian.AppendUint64(append([]byte(nil), v...), sid)
		if err := b.Set(k, nv, nil); err != nil {
			return err
		}
		rec := []byte{1}
		rec = binary.BigEndian.AppendUint64(rec, created)
		rec = binary.BigEndian.AppendUint64(rec, now)
		rec = append(rec, k[1:]...)            // current
		rec = append(rec, make([]byte, 40)...) // no previous token, nor its deadline
		rec = append(rec, 0, 0)                // no addr, no label
		sk := binary.BigEndian.AppendUint64([]byte{PrefixUserTokens}, user)
		sk = binary.BigEndian.AppendUint64(sk, sid)
		if err := b.Set(sk, rec, nil); err != nil {
			return err
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("read tokens: %w", err)
	}
	return nil
}
