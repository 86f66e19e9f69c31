package store

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// FormatVersion is the data folder layout this chatd writes. A folder
// without a record was written before versions were recorded: format 0.
// Format 2 has sessions (package account): a token record names its
// session, and each session has a record. Format 3 drops format 2's
// index of every user's tokens (tokenindex.go). Format 4 keeps import
// markers (importmark.go).
const FormatVersion = 4

// formatKey lives under the meta prefix so the record is written in the
// same Pebble batch as a migration's changes: a crash leaves either the old
// layout with the old number or the new layout with the new number.
var formatKey = []byte{PrefixMeta, 'f', 'o', 'r', 'm', 'a', 't'}

// migrations[i] turns a format i folder into format i+1. Each step must be
// idempotent: if the process dies before the batch commits, it runs again.
var migrations = []func(db *pebble.DB, b *pebble.Batch) error{
	// 0 -> 1: no layout change; only the record is added.
	func(*pebble.DB, *pebble.Batch) error { return nil },
	// 1 -> 2: every token becomes a session of its own (sessions.go).
	migrateSessions,
	// 2 -> 3: the token index goes (tokenindex.go).
	dropTokenIndex,
	// 3 -> 4: a folder with records may hold a failed move's copy (importmark.go).
	markImports,
}

// ErrNewerFormat is returned when the folder was written by a newer chatd.
var ErrNewerFormat = errors.New("data folder format is newer than this chatd understands")

// ReadFormat returns the folder's recorded format (0 if none).
func ReadFormat(db pebble.Reader) (uint32, error) {
	b, closer, err := db.Get(formatKey)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("store: read format: %w", err)
	}
	defer closer.Close()
	if len(b) != 4 {
		return 0, fmt.Errorf("store: format record has %d bytes, want 4", len(b))
	}
	return binary.BigEndian.Uint32(b), nil
}

// migrate brings db to FormatVersion, one step per synced batch, or refuses
// a folder newer than this binary.
func migrate(db *pebble.DB) error {
	v, err := ReadFormat(db)
	if err != nil {
		return err
	}
	if v > FormatVersion {
		return fmt.Errorf("%w: data folder format %d is newer than this chatd understands (%d): use a newer chatd",
			ErrNewerFormat, v, FormatVersion)
	}
	for ; v < FormatVersion; v++ {
		b := db.NewBatch()
		if err := migrations[v](db, b); err != nil {
			b.Close()
			return fmt.Errorf("store: migrate format %d to %d: %w", v, v+1, err)
		}
		var rec [4]byte
		binary.BigEndian.PutUint32(rec[:], v+1)
		if err := b.Set(formatKey, rec[:], nil); err != nil {
			b.Close()
			return fmt.Errorf("store: migrate format %d to %d: %w", v, v+1, err)
		}
		if err := b.Commit(pebble.Sync); err != nil {
			return fmt.Errorf("store: migrate format %d to %d: commit: %w", v, v+1, err)
		}
	}
	return nil
}
