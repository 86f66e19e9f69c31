package main

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/chatd/chatd/internal/history"
)

// TestControlMarkersBounded: the markers of received control messages stay
// at maxControlMarkers, the oldest (and the untimed ones of older stores)
// going first.
func TestControlMarkersBounded(t *testing.T) {
	st, err := history.Open(filepath.Join(t.TempDir(), "h.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	key := func(i int) string { return fmt.Sprintf("%s%032x", controlPrefix, i) }
	base := time.UnixMilli(1_800_000_000_000)
	err = st.Update(func(tx *history.Tx) error {
		if err := tx.Put(controlPrefix+"legacy", []byte{1}); err != nil {
			return err
		}
		if err := tx.Put("e2e/other", []byte{1}); err != nil {
			return err
		}
		// Written in an order unlike their times: the time decides.
		for i := range maxControlMarkers + 10 {
			j := (i * 7) % (maxControlMarkers + 10)
			if err := markControl(tx, key(j), base.Add(time.Duration(j)*time.Millisecond)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	st.Update(func(tx *history.Tx) error {
		keys, err := tx.Keys(controlPrefix)
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != maxControlMarkers {
			t.Fatalf("%d markers kept, want %d", len(keys), maxControlMarkers)
		}
		for i := range maxControlMarkers + 10 {
			_, ok, err := tx.Get(key(i))
			if err != nil {
				t.Fatal(err)
			}
			if want := i >= 10; ok != want {
				t.Fatalf("marker %d kept %t, want %t", i, ok, want)
			}
		}
		if _, ok, _ := tx.Get(controlPrefix + "legacy"); ok {
			t.Fatal("untimed marker kept over newer ones")
		}
		if _, ok, _ := tx.Get("e2e/other"); !ok {
			t.Fatal("trim deleted a key outside its prefix")
		}
		return nil
	})
}
