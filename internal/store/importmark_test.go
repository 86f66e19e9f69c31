package store

import (
	"encoding/binary"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// A shard may hold a moved copy once an import marked it, until the clear
// deletes the marker; a format 3 folder with records may hold one of any
// shard, an empty one of none.
func TestImportMarkers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		records bool
	}{{"format 3 with records", true}, {"format 3 empty", false}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			db, err := pebble.Open(dir, &pebble.Options{})
			if err != nil {
				t.Fatal(err)
			}
			var rec [4]byte
			binary.BigEndian.PutUint32(rec[:], 3)
			if err := db.Set(formatKey, rec[:], pebble.Sync); err != nil {
				t.Fatal(err)
			}
			if tc.records {
				if err := db.Set(binary.BigEndian.AppendUint64([]byte{PrefixUser}, 7), []byte("x"), pebble.Sync); err != nil {
					t.Fatal(err)
				}
			}
			db.Close()
			if db, err = Open(dir, Options{}); err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			for _, shard := range []int{0, 4095} {
				if may, err := MayHoldImport(db, shard); err != nil || may != tc.records {
					t.Fatalf("shard %d may hold a copy: %v, %v; want %v", shard, may, err, tc.records)
				}
			}
		})
	}

	db, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if may, _ := MayHoldImport(db, 12); may {
		t.Fatal("a new folder may hold a copy")
	}
	if err := db.Set(ImportMarker(12), nil, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if may, _ := MayHoldImport(db, 12); !may {
		t.Fatal("a marked shard may not hold a copy")
	}
	if may, _ := MayHoldImport(db, 13); may {
		t.Fatal("another shard may hold a copy")
	}
	if err := db.Delete(ImportMarker(12), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if may, _ := MayHoldImport(db, 12); may {
		t.Fatal("a cleared shard may hold a copy")
	}
}
