package store

import (
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Import markers (a cluster's shard move, package server). The new
// owner writes ImportMarker(shard) with every batch of a shard's records
// it imports, and the clear of a failed move's copy ("unimport", before
// each move there) deletes it with the records. The clear must scan every
// table (a shard's records are spread by user, not by shard), so without
// a marker it scans nothing: nothing came here since the last clear.
//
//	'm' | "import" | shard (2)   -> empty   (records of shard may have come here by a move)
//	'm' | "imports-unmarked"     -> empty   (format 3 folder: any shard may hold a copy)
//
// A folder from before markers (format 3) with any records may hold a
// failed move's copy of any shard: the migration to format 4 marks that,
// and such a folder's clears keep scanning.

var importPrefix = []byte{PrefixMeta, 'i', 'm', 'p', 'o', 'r', 't'}

var importsUnmarked = []byte{PrefixMeta, 'i', 'm', 'p', 'o', 'r', 't', 's', '-', 'u', 'n', 'm', 'a', 'r', 'k', 'e', 'd'}

// ImportMarker is shard's import marker key.
func ImportMarker(shard int) []byte {
	return binary.BigEndian.AppendUint16(append([]byte(nil), importPrefix...), uint16(shard))
}

// MayHoldImport reports whether shard's records may have come here by a
// move since they were last cleared.
func MayHoldImport(db pebble.Reader, shard int) (bool, error) {
	for _, k := range [][]byte{ImportMarker(shard), importsUnmarked} {
		if ok, err := Has(db, k); ok || err != nil {
			if err != nil {
				return false, fmt.Errorf("store: read import marker: %w", err)
			}
			return true, nil
		}
	}
	return false, nil
}

// markImports is the migration 3 -> 4: a folder with any record but its
// meta keys gets importsUnmarked.
func markImports(db *pebble.DB, b *pebble.Batch) error {
	it, err := db.NewIter(&pebble.IterOptions{})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		if k := it.Key(); len(k) > 0 && k[0] != PrefixMeta {
			return b.Set(importsUnmarked, nil, nil)
		}
	}
	return it.Error()
}
