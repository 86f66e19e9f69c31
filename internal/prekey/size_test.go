package prekey

import (
	"testing"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/store"
)

// TestBytesPerDevice measures what a typical device costs the store: 100
// one-time EC prekeys, 10 one-time KEM prekeys and the long-lived keys.
// Key+value bytes are exact (the layout); on-disk bytes are after a
// flush and a full compaction, with Pebble's block compression (random
// keys do not compress).
func TestBytesPerDevice(t *testing.T) {
	s, db := open(t, Config{})
	const devices, ec, kem = 10, 100, 10
	for u := uint64(1); u <= devices; u++ {
		device(t, s, u, ec, kem)
	}
	var kv int
	if err := s.scan([]byte{store.PrefixPrekeys}, func(k, v []byte) { kv += len(k) + len(v) }); err != nil {
		t.Fatal(err)
	}
	const key = 1 + 8 + 2 + 1 // 'E' | user | device | table
	want := (key + recordLen) + (key + 8) + ec*(key+4+codec.ECKeyLen) + kem*(key+4+codec.KEMKeyLen+codec.SigLen)
	if kv != devices*want {
		t.Fatalf("key+value bytes %d for %d devices, want %d each", kv, devices, want)
	}
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := db.Compact(t.Context(), []byte{store.PrefixPrekeys}, []byte{store.PrefixPrekeys + 1}, true); err != nil {
		t.Fatal(err)
	}
	m := db.Metrics()
	tables := m.Total().TablesSize
	t.Logf("per device (%d EC + %d KEM one-time + long-lived): %d B key+value, %d B of sstables after compaction (%d B for %d devices)",
		ec, kem, want, tables/devices, tables, devices)
	t.Logf("of which: long-lived record %d B, %d EC prekeys %d B, %d KEM prekeys %d B",
		key+recordLen, ec, ec*(key+4+codec.ECKeyLen), kem, kem*(key+4+codec.KEMKeyLen+codec.SigLen))
}
