package server

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/store"
	"github.com/cockroachdb/pebble/v2"
)

// TestUpgradeFromFormat0 opens a data folder written by a chatd from
// before the format record (testdata/format0.txt says how it was made):
// the current chatd migrates it, and its users, tokens (each now a
// session), group and waiting messages are all there.
func TestUpgradeFromFormat0(t *testing.T) {
	cfg := testConfig(t)
	copyDir(t, filepath.Join("testdata", "format0"), cfg.DataDir)
	s := startServer(t, cfg)
	if v, err := store.ReadFormat(s.db); err != nil || v != store.FormatVersion {
		t.Fatalf("format after opening: %d, %v; want %d", v, err, store.FormatVersion)
	}
	if n := s.Stats().Users; n != 3 {
		t.Fatalf("%d users, want alice, bob and carol", n)
	}

	// bob resumes with the token the old server gave him: it is a session
	// now, and RESUME rotates it.
	var bobTok codec.Token
	if _, err := hex.Decode(bobTok[:], []byte("0000000000000002c2ccee1880ec033edaee3c309150199ab8080e97a5519a40")); err != nil {
		t.Fatal(err)
	}
	bob, err := resumeWith(t, s, bobTok)
	if err != nil {
		t.Fatalf("resume with a format 0 token: %v", err)
	}
	if bob.Welcome.User != 2 || bob.Welcome.Token == bobTok {
		t.Fatalf("WELCOME %+v", bob.Welcome)
	}
	// What waited in his inbox, in order: the group's creation, alice's
	// two messages, carol's, and the group message.
	var got []string
	for len(got) < 4 {
		switch f := next[codec.Frame](t, bob).(type) {
		case *codec.GroupEvent:
			if f.Kind != codec.GroupCreated || f.Group != 1 || string(f.Name) != "team" {
				t.Fatalf("group event %+v", f)
			}
			bob.Ack(f.Seq, true)
		case *codec.Deliver:
			got = append(got, string(f.Body))
			bob.Ack(f.Seq, true)
		default:
			t.Fatalf("got %T %+v", f, f)
		}
	}
	want := []string{"hello bob 1", "hello bob 2", "from carol", "hello team"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("bob's inbox: %q, want %q", got, want)
		}
	}
	list := listSessions(t, bob)
	if len(list) != 1 || list[0].Flags&codec.SessionCurrent == 0 {
		t.Fatalf("bob's sessions: %+v", list)
	}

	// alice's password and the name index came through too.
	alice := login(t, s, "alice")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if id, err := alice.LookupName(ctx, "carol"); err != nil || id != 3 {
		t.Fatalf("carol is %d, %v", id, err)
	}
	if list := listSessions(t, alice); len(list) != 2 { // the migrated token's and this login's
		t.Fatalf("alice's sessions: %+v", list)
	}
}

// copyDir copies the files of src into dst (flat; Pebble folders are).
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestUpgradeFromFormat2 opens a data folder written by the last chatd
// of format 2 (testdata/format2.txt), whose index of every user's
// tokens format 3 dropped: the index is gone, the tokens still resume,
// the waiting message is there, and a password change still ends every session of a
// user, found through the session records alone.
func TestUpgradeFromFormat2(t *testing.T) {
	cfg := testConfig(t)
	copyDir(t, filepath.Join("testdata", "format2"), cfg.DataDir)
	if n := tokenIndexKeys(t, cfg.DataDir, nil); n == 0 {
		t.Fatal("the format 2 folder holds no token index: not the folder this test is for")
	}
	s := startServer(t, cfg)
	if v, err := store.ReadFormat(s.db); err != nil || v != store.FormatVersion {
		t.Fatalf("format after opening: %d, %v; want %d", v, err, store.FormatVersion)
	}
	if n := tokenIndexKeys(t, "", s.db); n != 0 {
		t.Fatalf("%d token index keys left after the migration", n)
	}

	tok := func(s string) codec.Token {
		var tk codec.Token
		if _, err := hex.Decode(tk[:], []byte(s)); err != nil {
			t.Fatal(err)
		}
		return tk
	}
	if _, err := resumeWith(t, s, tok("000000000000000148e75f79b68d0399ef59f423cc2e27c860b3a93f5c347118")); err != nil {
		t.Fatalf("alice's current token: %v", err)
	}
	bob, err := resumeWith(t, s, tok("00000000000000025d0d8a029bc940e76327ee93db51500ff88d7be29e3837e2"))
	if err != nil {
		t.Fatalf("bob's token: %v", err)
	}
	if d := next[*codec.Deliver](t, bob); string(d.Body) != "from carol" {
		t.Fatalf("bob got %q", d.Body)
	}

	// carol changes her password from a new login: the token she
	// registered with, whose index key the migration deleted, dies too.
	carol := login(t, s, "carol")
	carol.WriteRaw((&codec.Password{Old: []byte("password-carol"), New: []byte("a new secret")}).Append(nil))
	until[*codec.Welcome](t, carol)
	if _, err := resumeWith(t, s, tok("0000000000000003dc9a196bab62acd29ffadeb3f196b69db1a0fb648b74216f")); err == nil {
		t.Fatal("carol's old token resumed after her password change")
	}
	if n := tokenRecordsOf(t, s.db, 3); n != 1 {
		t.Fatalf("carol has %d token records after a password change, want the new one", n)
	}
}

// tokenIndexKeys counts format 2 token index keys, in db or (db nil) in
// the Pebble folder dir.
func tokenIndexKeys(t *testing.T, dir string, db *pebble.DB) int {
	t.Helper()
	if db == nil {
		var err error
		if db, err = pebble.Open(dir, &pebble.Options{ReadOnly: true}); err != nil {
			t.Fatal(err)
		}
		defer db.Close()
	}
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{store.PrefixUserTokens}, UpperBound: []byte{store.PrefixUserTokens + 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	n := 0
	for it.First(); it.Valid(); it.Next() {
		if len(it.Key()) == 1+8+32 {
			n++
		}
	}
	return n
}

// tokenRecordsOf counts user's token records.
func tokenRecordsOf(t *testing.T, db *pebble.DB, user uint64) int {
	t.Helper()
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{store.PrefixToken}, UpperBound: []byte{store.PrefixToken + 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	n := 0
	for it.First(); it.Valid(); it.Next() {
		if v := it.Value(); len(v) >= 8 && binary.BigEndian.Uint64(v) == user {
			n++
		}
	}
	return n
}
