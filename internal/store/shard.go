package store

import (
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// ShardRecords calls fn with every record that belongs to the users and
// groups in (a cluster's home shard, for a shard move), by the layout in
// the package comment: what names a user or group in each table's key or
// value. Not included: group bodies (package offline materializes the
// entries that refer to them), the outbox (it stays with the node that
// wrote it) and meta counters (each package moves its own).
func ShardRecords(db *pebble.DB, in func(id uint64) bool, fn func(key, value []byte) error) error {
	type table struct {
		prefix byte
		owner  func(k, v []byte) (uint64, bool) // the user or group the record belongs to
	}
	keyAt := func(off int) func(k, v []byte) (uint64, bool) {
		return func(k, v []byte) (uint64, bool) {
			if len(k) < off+8 {
				return 0, false
			}
			return binary.BigEndian.Uint64(k[off:]), true
		}
	}
	valueAt0 := func(k, v []byte) (uint64, bool) {
		if len(v) < 8 {
			return 0, false
		}
		return binary.BigEndian.Uint64(v), true
	}
	tables := []table{
		{PrefixName, valueAt0},       // name -> user
		{PrefixUser, keyAt(1)},       // user
		{PrefixToken, valueAt0},      // token hash -> user | created
		{PrefixUserTokens, keyAt(1)}, // user | session
		{PrefixInbox, keyAt(1)},      // user | seq
		{PrefixExpiry, keyAt(5)},     // hour | user
		{PrefixDedup, valueAt0},      // day | sender | id -> recipient (user or group)
		{PrefixLastSeen, keyAt(1)},   // user
		{PrefixGroup, keyAt(1)},      // group | ...
		{PrefixUserGroups, keyAt(9)}, // user | group: the group's home keeps it
		{PrefixReadLog, keyAt(5)},    // day | reader | ...
		{PrefixBlock, keyAt(1)},      // owner | ...: a user's lists (package block)
		{PrefixPrekeys, keyAt(1)},    // user | device | ...: its keys and fetchers, and notices for it
		{PrefixPushSub, keyAt(1)},    // user | device: after the inbox, which a due push needs
		{PrefixPushDue, keyAt(1)},    // user
	}
	for _, t := range tables {
		it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{t.prefix}, UpperBound: []byte{t.prefix + 1}})
		if err != nil {
			return fmt.Errorf("store: shard records: %w", err)
		}
		for it.First(); it.Valid(); it.Next() {
			v, err := it.ValueAndErr()
			if err != nil {
				it.Close()
				return fmt.Errorf("store: shard records: %w", err)
			}
			if id, ok := t.owner(it.Key(), v); ok && in(id) {
				if err := fn(it.Key(), v); err != nil {
					it.Close()
					return err
				}
			}
		}
		err = it.Error()
		it.Close()
		if err != nil {
			return fmt.Errorf("store: shard records: %w", err)
		}
	}
	return nil
}
