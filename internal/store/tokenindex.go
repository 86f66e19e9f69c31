package store

import (
	"github.com/cockroachdb/pebble/v2"
)

// dropTokenIndex is format 2 -> 3. Format 2 kept, beside each token
// record and each session record, an index of every user's tokens:
//
//	'K' | user (8) | sha256(token) (32) -> (empty)
//
// Format 3 finds a user's tokens through its session records (each
// names its current and previous token), which saves two of the five
// records every RESUME wrote. The index keys are deleted; the session
// records ('K' | user | session, 17 bytes) stay.
func dropTokenIndex(db *pebble.DB, b *pebble.Batch) error {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{PrefixUserTokens}, UpperBound: []byte{PrefixUserTokens + 1}})
	if err != nil {
		return err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		if k := it.Key(); len(k) == 1+8+32 {
			if err := b.Delete(append([]byte(nil), k...), nil); err != nil {
				return err
			}
		}
	}
	return it.Error()
}
