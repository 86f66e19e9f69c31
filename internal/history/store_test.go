package history

import (
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/chatd/chatd/codec"
)

func id(b byte) codec.MsgID { return codec.MsgID{0: 1, 15: b} }

func open(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestHistoryAndSearchSurviveReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "alice.db")
	s := open(t, path)
	const alice, bob, carol, group = 1, 2, 3, 900
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.AddIncoming(&codec.Deliver{ID: id(1), From: bob, Time: 1000, Body: []byte("lunch at noon?")}))
	must(s.AddOutgoing(Message{ID: id(2), Chat: bob, From: alice, Time: time.UnixMilli(2000), Body: "Yes, the usual Place"}))
	must(s.AddIncoming(&codec.Deliver{ID: id(3), From: carol, Time: 3000, Body: []byte("place your bets")}))
	must(s.AddIncoming(&codec.Deliver{ID: id(4), From: carol, Group: group, Time: 4000, Body: []byte("group lunch")}))
	// A redelivery after a crash is stored once.
	must(s.AddIncoming(&codec.Deliver{ID: id(1), From: bob, Time: 1000, Body: []byte("lunch at noon?")}))
	must(s.SetContact(bob, "bob"))
	must(s.Put("e2e/session/2", []byte{1, 2, 3}))
	s.Close()

	s = open(t, path)
	h, err := s.History(bob, false, 10)
	must(err)
	if len(h) != 2 || h[0].Body != "lunch at noon?" || h[1].Body != "Yes, the usual Place" || !h[1].Outgoing || h[0].From != bob {
		t.Fatalf("history with bob: %+v", h)
	}
	if h, _ := s.History(bob, false, 1); len(h) != 1 || h[0].ID != id(2) {
		t.Fatalf("last 1 with bob: %+v", h)
	}
	if h, _ := s.History(group, true, 10); len(h) != 1 || h[0].ID != id(4) {
		t.Fatalf("group history: %+v", h)
	}
	found := func(q string, want ...codec.MsgID) {
		t.Helper()
		got, err := s.Search(q, 10)
		must(err)
		if len(got) != len(want) {
			t.Fatalf("search %q: %d results %+v, want %d", q, len(got), got, len(want))
		}
		for i := range want {
			if got[i].ID != want[i] {
				t.Fatalf("search %q: result %d is %v, want %v", q, i, got[i].ID, want[i])
			}
		}
	}
	found("place", id(2), id(3)) // case-insensitive, oldest first
	found("lunch", id(1), id(4))
	found("lunch noon", id(1))
	found("pla*", id(2), id(3))
	found("nothing")
	found(`"AND OR NEAR(`) // FTS5 syntax is taken literally, not an error
	if c, _ := s.Contacts(); c[bob] != "bob" {
		t.Fatalf("contacts: %v", c)
	}
	if v, ok, _ := s.Get("e2e/session/2"); !ok || len(v) != 3 {
		t.Fatalf("kv: %v %v", v, ok)
	}
}

func TestTicksAdvanceOnly(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "a.db"))
	if err := s.AddOutgoing(Message{ID: id(1), Chat: 2, From: 1, Time: time.UnixMilli(5), Body: "hi"}); err != nil {
		t.Fatal(err)
	}
	if p, _ := s.Pending(); len(p) != 1 {
		t.Fatalf("pending: %+v", p)
	}
	step := func(st State, wantChanged bool, want State) {
		t.Helper()
		m, changed, err := s.Advance(id(1), st, time.Time{})
		if err != nil || changed != wantChanged || m.State != want {
			t.Fatalf("advance to %v: changed %v state %v err %v; want %v %v", st, changed, m.State, err, wantChanged, want)
		}
	}
	if m, ch, _ := s.Advance(id(1), Sent, time.UnixMilli(99)); !ch || m.Time.UnixMilli() != 99 {
		t.Fatalf("sent: %+v %v", m, ch)
	}
	step(Read, true, Read)
	step(Delivered, false, Read) // a late delivered receipt does not undo read
	step(Expired, false, Read)
	if p, _ := s.Pending(); len(p) != 0 {
		t.Fatalf("pending after SENT: %+v", p)
	}
	if _, ch, _ := s.Advance(id(9), Sent, time.Time{}); ch {
		t.Fatal("advanced an unknown message")
	}
}

func TestUnreadAndMarkRead(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "a.db"))
	for i := byte(1); i <= 3; i++ {
		if err := s.AddIncoming(&codec.Deliver{ID: id(i), From: 2, Time: uint64(i), Body: []byte("m")}); err != nil {
			t.Fatal(err)
		}
	}
	u, _ := s.Unread(2, false)
	if len(u) != 3 {
		t.Fatalf("unread %d", len(u))
	}
	if err := s.MarkRead(id(1), id(2)); err != nil {
		t.Fatal(err)
	}
	if u, _ := s.Unread(2, false); len(u) != 1 || u[0].ID != id(3) {
		t.Fatalf("unread after marking: %+v", u)
	}
}

// TestMigrationsFromEveryVersion: a store left at any older schema version
// opens and ends at the newest; a newer one is refused, not damaged.
func TestMigrationsFromEveryVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.db")
	s := open(t, path)
	var v int
	if err := s.db.QueryRow(`PRAGMA user_version`).Scan(&v); err != nil || v != len(migrations) {
		t.Fatalf("version %d err %v, want %d", v, err, len(migrations))
	}
	if _, err := s.db.Exec(`PRAGMA user_version = 99`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := Open(path); err == nil {
		t.Fatal("opened a store from a newer chatd")
	}
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	db.Exec(`PRAGMA user_version = 0`)
	db.Close()
	// Version 0 with tables already there must fail loudly rather than
	// half-migrate; a fresh file at 0 migrates (above).
	if _, err := Open(path); err == nil {
		t.Fatal("re-ran migration 1 over existing tables without an error")
	}
}

func TestDefaultPath(t *testing.T) {
	t.Setenv("XDG_DATA_HOME", "/data")
	p, err := DefaultPath("chat.example.com:7420", "alice")
	if err != nil || p != "/data/chatd/chat.example.com_7420-alice.db" {
		t.Fatalf("%q %v", p, err)
	}
	t.Setenv("XDG_DATA_HOME", "")
	t.Setenv("HOME", "/home/a")
	if p, _ := DefaultPath("h:1", "bob"); p != "/home/a/.local/share/chatd/h_1-bob.db" {
		t.Fatalf("%q", p)
	}
}

// TestTxRollsBackAndMigrates: an Update that fails leaves nothing behind
// (end-to-end state and the message it belongs to go together), and a
// store made at schema 1 gains migration 2.
func TestTxRollsBackAndMigrates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(migrations[0] + `; PRAGMA user_version = 1`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s := open(t, path)
	fail := errors.New("decrypt failed")
	err = s.Update(func(tx *Tx) error {
		if err := tx.Put("e2e/session/1", []byte("new state")); err != nil {
			return err
		}
		if _, err := tx.AddIncoming(&codec.Deliver{ID: id(1), From: 2, Body: []byte("x")}, "plain"); err != nil {
			return err
		}
		return fail
	})
	if !errors.Is(err, fail) {
		t.Fatalf("Update: %v", err)
	}
	if _, ok, _ := s.Get("e2e/session/1"); ok {
		t.Fatal("state written by a failed Update")
	}
	if _, ok, _ := s.Message(id(1)); ok {
		t.Fatal("message written by a failed Update")
	}
	err = s.Update(func(tx *Tx) error {
		for _, k := range []string{"e2e/a/1", "e2e/a/2", "e2e/b/1"} {
			if err := tx.Put(k, []byte{1}); err != nil {
				return err
			}
		}
		if err := tx.AddOutgoing(Message{ID: id(2), Chat: 2, From: 1, Body: "hi"}, []byte("envelope")); err != nil {
			return err
		}
		return tx.AddControl(id(3), 2, 7, []byte("key"))
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Update(func(tx *Tx) error {
		keys, err := tx.Keys("e2e/a/")
		if err != nil || len(keys) != 2 {
			t.Fatalf("Keys: %v %v", keys, err)
		}
		return nil
	})
	out, err := s.PendingSealed()
	if err != nil || len(out) != 1 || string(out[0].Sealed) != "envelope" {
		t.Fatalf("PendingSealed: %+v %v", out, err)
	}
	ctl, err := s.Controls()
	if err != nil || len(ctl) != 1 || ctl[0].Peer != 2 || ctl[0].Group != 7 {
		t.Fatalf("Controls: %+v %v", ctl, err)
	}
	c, ok, err := s.DropControl(id(3))
	if !ok || err != nil || c.Peer != 2 || c.Group != 7 || string(c.Body) != "key" {
		t.Fatalf("DropControl: %+v %v %v", c, ok, err)
	}
	if _, ok, err := s.DropControl(id(3)); ok || err != nil {
		t.Fatalf("DropControl twice: %v %v", ok, err)
	}
}
