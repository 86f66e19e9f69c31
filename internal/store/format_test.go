package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

func TestOpenRecordsFormat(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	v, err := ReadFormat(db)
	if err != nil || v != FormatVersion {
		t.Fatalf("format = %d, %v; want %d", v, err, FormatVersion)
	}
}

func TestOpenRefusesNewerFormat(t *testing.T) {
	dir := t.TempDir()
	db, err := pebble.Open(dir, &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var rec [4]byte
	binary.BigEndian.PutUint32(rec[:], 99)
	if err := db.Set(formatKey, rec[:], pebble.Sync); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = Open(dir, Options{})
	if !errors.Is(err, ErrNewerFormat) || !strings.Contains(err.Error(), "format 99") || !strings.Contains(err.Error(), fmt.Sprintf("(%d)", FormatVersion)) {
		t.Fatalf("err = %v", err)
	}
}

// A folder without a record (format 0) is migrated and keeps its data. This
// folder is built here with plain Pebble, not by the previous commit's server.
func TestOpenMigratesFormat0(t *testing.T) {
	dir := t.TempDir()
	db, err := pebble.Open(dir, &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	key := []byte{PrefixMeta, 'x'}
	if err := db.Set(key, []byte("kept"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if v, err := ReadFormat(db); err != nil || v != FormatVersion {
		t.Fatalf("format = %d, %v; want %d", v, err, FormatVersion)
	}
	b, closer, err := db.Get(key)
	if err != nil || string(b) != "kept" {
		t.Fatalf("key after migration = %q, %v", b, err)
	}
	closer.Close()
}
