// Package store opens chatd's embedded Pebble database and owns the layout
// of its key space, which accounts, inboxes and groups share. One database
// means one write-ahead log, so every Sync commit in the process shares
// fsyncs with every other.
//
// # Key space
//
// Every key starts with a one-byte table prefix; integers are big-endian so
// that keys of one user sort by sequence.
//
//	'm' | name                                   meta counters (next user id, sequence high-water mark, ...) and markers (a shard's import)
//	'n' | user name                              -> user id                       (account by name)
//	'u' | user (8)                               -> account record                (account by id)
//	'k' | sha256(token) (32)                     -> user | created | session      (session tokens)
//	'K' | user (8) | sha256(token) (32)          -> empty                         (a user's tokens, to revoke them all)
//	'K' | user (8) | session (8)                 -> session record                (account/session.go)
//	'i' | user (8) | seq (8)                     -> inbox entry                   (package offline)
//	'x' | hour (4) | user (8)                    -> empty                         (expiry index, package offline)
//	'd' | day (4) | sender (8) | msg id (16)     -> recipient | seq | time        (dedup window, package offline)
//	'l' | user (8)                               -> last seen (8) | privacy (1)   (package presence)
//	'g' | group (8) | ...                        groups (package group)
//	'G' | user (8) | group (8)                   -> empty                         (a user's groups)
//	'b' | hour (4) | body (8) | 0                -> group message, stored once    (package offline)
//	'b' | hour (4) | body (8) | 1                -> members yet to acknowledge it
//	'r' | day (4) | reader (8) | sender (8) | group (8) | seq (8) -> ids   (read log: delivered, not yet read; package offline)
//	'o' | seq (8)                                -> group entry | members       (cluster: a fan-out to other nodes' members, until they have it; package offline)
//	'B' | owner (8) | list (1) | user (8)        -> empty                         (blocked users, contacts; package block)
//	'B' | owner (8) | 0xFF                       -> group-add setting (1)         (package block)
//	'D' | user (8)                               -> state (1) | time (8)          (account deletions, done or under way; package account)
//	'N' | user name                              -> release time (8)              (names of deleted accounts, held until then; package account)
//	'E' | user (8) | device (2) | ...            end-to-end prekeys, their fetchers and pending identity notices (package prekey)
//	'W' | user (8) | device (4)                  -> created (8) | p256dh (65) | auth (16) | endpoint  (Web Push subscriptions, package push)
//	'w' | user (8)                               -> count (4) | urgency (1)     (pushes due but not yet done, package push)
package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"
)

// Table prefixes; see the package comment.
const (
	PrefixMeta       = 'm'
	PrefixName       = 'n'
	PrefixUser       = 'u'
	PrefixToken      = 'k'
	PrefixUserTokens = 'K'
	PrefixInbox      = 'i'
	PrefixExpiry     = 'x'
	PrefixDedup      = 'd'
	PrefixLastSeen   = 'l'
	PrefixGroup      = 'g'
	PrefixUserGroups = 'G'
	PrefixBody       = 'b'
	PrefixReadLog    = 'r'
	PrefixOutbox     = 'o'
	PrefixBlock      = 'B'
	PrefixDeleted    = 'D'
	PrefixNameHeld   = 'N'
	PrefixPrekeys    = 'E'
	PrefixPushSub    = 'W'
	PrefixPushDue    = 'w'
)

// Options tune the database. A zero field means its default.
type Options struct {
	// CacheSize is Pebble's block cache. Default 64 MiB.
	CacheSize int64
	// MemTableSize is the size of one memtable. A large one lets most
	// messages be delivered, acknowledged and deleted before they ever
	// reach an sstable. Default 64 MiB.
	MemTableSize uint64
	// MaxOpenFiles caps Pebble's table cache. It counts against the
	// process's open-files limit, which sockets need: default 256.
	MaxOpenFiles int
	// SyncInterval is the least time between two WAL fsyncs. Deliveries go
	// out before the fsync, so a short interval costs the sender's SENT at
	// most this much and nothing else, and at moderate rates it turns one
	// fsync per small batch into one per interval (measured: fsync was a
	// third of the server's CPU at 5,000 msgs/s without it). Default 500us;
	// negative turns it off.
	SyncInterval time.Duration
	// Space, when set, is told the moment a database write meets ENOSPC
	// (it releases its ballast, and Pebble retries the write once).
	Space *Space
	// Logger receives Pebble's own messages.
	Logger *zap.Logger
}

// Open opens (creating if needed) the database in dir, which it keeps
// private to this user (see preparePrivateDir).
func Open(dir string, o Options) (*pebble.DB, error) {
	if o.CacheSize == 0 {
		o.CacheSize = 64 << 20
	}
	if o.MemTableSize == 0 {
		o.MemTableSize = 64 << 20
	}
	if o.MaxOpenFiles == 0 {
		o.MaxOpenFiles = 256
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.SyncInterval == 0 {
		o.SyncInterval = 500 * time.Microsecond
	}
	syncInterval := max(o.SyncInterval, 0)
	if err := preparePrivateDir(dir, o.Logger); err != nil {
		return nil, err
	}
	cache := pebble.NewCache(o.CacheSize)
	defer cache.Unref() // the DB holds its own reference
	opts := &pebble.Options{
		FS:                          privateFS{vfs.Default},
		FormatMajorVersion:          pebble.FormatNewest,
		Cache:                       cache,
		MemTableSize:                o.MemTableSize,
		MemTableStopWritesThreshold: 4,
		L0CompactionThreshold:       4,
		L0StopWritesThreshold:       24,
		MaxOpenFiles:                o.MaxOpenFiles,
		Logger:                      zapLogger{o.Logger.Sugar()},
		CompactionConcurrencyRange:  func() (int, int) { return 1, max(2, runtime.GOMAXPROCS(0)/2) },
		WALMinSyncInterval:          func() time.Duration { return syncInterval },
	}
	// Block compression, not per-message: measured on chat-like text it
	// saves 41% by itself, and compressing each body with a trained s2
	// dictionary first adds only 2% more (0 or worse on encrypted bodies),
	// for a microsecond per message on the hot path. BENCHMARKS.md has the
	// study; offline's entry header keeps a codec byte for a later change.
	if o.Space != nil {
		opts.FS = vfs.OnDiskFull(opts.FS, o.Space.diskFull) // around privateFS, not in place of it
	}
	opts.FS = pidLockFS{opts.FS}
	opts.ApplyCompressionSettings(func() pebble.DBCompressionSettings { return pebble.DBCompressionBalanced })
	db, err := pebble.Open(dir, opts)
	var locked *LockedError
	if errors.As(err, &locked) {
		return nil, locked // already says what and where
	}
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", dir, err)
	}
	if err := migrate(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open %s: %w", dir, err)
	}
	return db, nil
}

// zapLogger adapts zap to Pebble's Logger. Pebble logs at start-up, on
// WAL recovery and on background errors, never per write.
type zapLogger struct{ s *zap.SugaredLogger }

func (l zapLogger) Infof(format string, args ...any)  { l.s.Debugf("pebble: "+format, args...) }
func (l zapLogger) Errorf(format string, args ...any) { l.s.Errorf("pebble: "+format, args...) }
func (l zapLogger) Fatalf(format string, args ...any) { l.s.Fatalf("pebble: "+format, args...) }

// Count counts the keys that start with prefix, from keys alone, stopping
// at max (no limit when max < 0).
func Count(db *pebble.DB, prefix []byte, max int) (int, error) {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: PrefixEnd(prefix)})
	if err != nil {
		return 0, fmt.Errorf("store: count keys: %w", err)
	}
	n := 0
	for it.First(); it.Valid() && n != max; it.Next() {
		n++
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return n, fmt.Errorf("store: count keys: %w", err)
	}
	return n, nil
}

// GetUint64 reads the big-endian integer stored at key (its first 8
// bytes); found is false when there is no such key.
func GetUint64(db pebble.Reader, key []byte) (v uint64, found bool, err error) {
	b, closer, err := db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	defer closer.Close()
	return binary.BigEndian.Uint64(b), true, nil
}

// Has reports whether key is stored.
func Has(db pebble.Reader, key []byte) (bool, error) {
	_, closer, err := db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	closer.Close()
	return true, nil
}

// PrefixEnd returns the smallest key greater than every key starting with
// p, for an iterator's UpperBound (nil when p is all 0xff).
func PrefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}
