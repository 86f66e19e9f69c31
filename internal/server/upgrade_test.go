package server

import (
	"context"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/store"
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
