package server

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/store/storetest"
)

// nextFrame returns c's next frame but PONG and RECEIPT, failing after 5 s.
func nextFrame(t *testing.T, c *client.Conn) codec.Frame {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case f, ok := <-c.Events():
			if !ok {
				t.Fatalf("connection ended: %v", c.Err())
			}
			switch f.(type) {
			case *codec.Pong, *codec.Receipt:
				continue
			}
			return f
		case <-deadline:
			t.Fatal("no frame from the server within 5 s")
		}
	}
}

// TestRefusedSendHoldsLaterOnes: a SEND refused for now (28, storage full)
// is resent after the messages the client wrote behind it. Before holds,
// one of those, arriving once the disk had room again, was stored ahead
// of it and bob got the pair out of order. Now every later SEND to bob on
// that connection is refused with the same code until the refused id
// comes again; another recipient is not held.
func TestRefusedSendHoldsLaterOnes(t *testing.T) {
	vol := storetest.MountTmpfs(t, 32<<20)
	cfg := testConfig(t)
	cfg.DataDir = filepath.Join(vol, "data")
	cfg.MemTableSize = 1 << 20
	cfg.CacheSize = 1 << 20
	cfg.Ballast = 4 << 20
	cfg.StorageHysteresis = 8 << 20
	cfg.StorageInterval = 10 * time.Millisecond
	s := startServer(t, cfg)
	alice := register(t, s, "alice")
	bob := register(t, s, "bob")
	bobID := bob.Welcome.User
	bob.Close()
	carol := register(t, s, "carol")
	carolID := carol.Welcome.User
	carol.Close()
	dave := register(t, s, "dave")

	// Fill the volume below the refusing mark with a file of our own.
	var st syscall.Statfs_t
	if err := syscall.Statfs(vol, &st); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(vol, "filler")
	if err := os.WriteFile(filler, make([]byte, int64(st.Bavail)*st.Bsize-(1<<20)), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return s.space.Full() })

	a, b, c := codec.MsgID{1}, codec.MsgID{2}, codec.MsgID{3}
	if err := alice.SendID(a, 0, bobID, []byte("first"), true); err != nil {
		t.Fatal(err)
	}
	if f := nextFrame(t, alice); !refusedFor(f, codec.CodeStorageFull, a) {
		t.Fatalf("first SEND while full: got %#v, want ERROR 28 for it", f)
	}
	// Holds are bounded: the refusal that would hold a 65th recipient
	// closes the connection (its client resends all in order on a new one).
	for i := range maxHolds + 1 {
		if err := dave.SendID(codec.MsgID{9, byte(i)}, 0, 1_000_000+uint64(i), []byte("x"), true); err != nil {
			t.Fatal(err)
		}
		if f := nextFrame(t, dave); !refusedFor(f, codec.CodeStorageFull, codec.MsgID{9, byte(i)}) {
			t.Fatalf("SEND %d while full: got %#v, want ERROR 28", i, f)
		}
	}
	select {
	case <-dave.Done():
	case <-time.After(5 * time.Second):
		t.Fatalf("dave's connection holds %d recipients and is still open", maxHolds+1)
	}
	waitFor(t, func() bool { return s.holds.len() == 1 }) // alice's only: dave's went with his connection

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return !s.space.Full() })

	// Written behind a (a window of unanswered SENDs): refused too.
	if err := alice.SendID(b, 0, bobID, []byte("second"), true); err != nil {
		t.Fatal(err)
	}
	if f := nextFrame(t, alice); !refusedFor(f, codec.CodeStorageFull, b) {
		t.Fatalf("SEND behind a refused one to the same recipient: got %#v, want ERROR 28 for it", f)
	}
	if err := alice.SendID(c, 0, carolID, []byte("to carol"), true); err != nil {
		t.Fatal(err)
	}
	if f, ok := nextFrame(t, alice).(*codec.Sent); !ok || f.ID != c {
		t.Fatalf("SEND to another recipient: got %#v, want SENT", f)
	}

	// The client resends in order: both are taken.
	for _, m := range []struct {
		id   codec.MsgID
		body string
	}{{a, "first"}, {b, "second"}} {
		if err := alice.SendID(m.id, codec.FlagDup, bobID, []byte(m.body), true); err != nil {
			t.Fatal(err)
		}
		if f, ok := nextFrame(t, alice).(*codec.Sent); !ok || f.ID != m.id {
			t.Fatalf("resend of %q: got %#v, want SENT", m.body, f)
		}
	}
	if n := s.holds.len(); n != 0 {
		t.Fatalf("%d connections still hold a recipient after the resends", n)
	}
	bob = login(t, s, "bob")
	for _, want := range []codec.MsgID{a, b} {
		d, ok := nextFrame(t, bob).(*codec.Deliver)
		if !ok || d.ID != want {
			t.Fatalf("bob got %#v, want DELIVER of %v (the order alice sent them in)", d, want)
		}
		bob.Ack(d.Seq, true)
	}
}

func refusedFor(f codec.Frame, code codec.Code, id codec.MsgID) bool {
	e, ok := f.(*codec.Error)
	return ok && e.Code == code && e.ID == id
}
