package store

import (
	"encoding/binary"
	"errors"
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
	if !errors.Is(err, ErrNewerFormat) || !strings.Contains(err.Error(), "format 99") || !strings.Contains(err.Error(), "(1)") {
		t.Fatalf("err = %v", err)
	}
}
