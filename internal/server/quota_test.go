package server

import (
	"bytes"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
)

// TestInboxByteQuota fills bob's inbox with large bodies until a SEND is
// refused with ERROR 75 (the entry quota is far off), restarts the server
// and checks the refusal holds (the byte count is rebuilt from disk), then
// has bob acknowledge one and checks one more message fits again, and no
// more.
func TestInboxByteQuota(t *testing.T) {
	const body = 60000
	entry := int64(10 + 32 + body) // a stored message entry: header, id, from, group, body
	cfg := testConfig(t)
	cfg.QuotaBytes = 3*entry + entry/2
	s, stop := serve(t, cfg)
	alice := register(t, s, "alice")
	bob := register(t, s, "bob")
	bobID := bob.Welcome.User
	bob.Close() // offline: the messages wait in its inbox
	big := bytes.Repeat([]byte("q"), body)

	// sendUntil sends big to bob until SENT or ERROR code (anything else
	// fails), and returns which came.
	expect := func(c *client.Conn, want codec.Code) {
		t.Helper()
		id, _ := c.Send(bobID, big, true)
		switch f := next[codec.Frame](t, c).(type) {
		case *codec.Sent:
			if want != 0 {
				t.Fatalf("SEND stored, want ERROR %d", want)
			}
		case *codec.Error:
			if f.Code != want || f.ID != id {
				t.Fatalf("ERROR %d (%s) for %x, want %d", f.Code, f.Detail, f.ID, want)
			}
		default:
			t.Fatalf("got %T, want SENT or ERROR", f)
		}
	}
	for i := 0; i < 3; i++ {
		expect(alice, 0)
	}
	expect(alice, codec.CodeInboxBytesFull)

	if err := stop(); err != nil {
		t.Fatal(err)
	}
	s = startServer(t, cfg)
	alice = login(t, s, "alice")
	expect(alice, codec.CodeInboxBytesFull) // counted again from the stored entries

	bob = login(t, s, "bob")
	d := next[*codec.Deliver](t, bob)
	bob.Ack(d.Seq, true)
	next[*codec.Receipt](t, alice) // delivered: the entry is deleted once this is durable
	// The delete rides the lane's next batch: poll with fresh messages.
	deadline := time.Now().Add(10 * time.Second)
	for {
		id, _ := alice.Send(bobID, big, true)
		f := next[codec.Frame](t, alice)
		if _, ok := f.(*codec.Sent); ok {
			break
		}
		if e, ok := f.(*codec.Error); !ok || e.Code != codec.CodeInboxBytesFull || e.ID != id {
			t.Fatalf("got %T %+v, want SENT or ERROR 75", f, f)
		}
		if time.Now().After(deadline) {
			t.Fatal("acknowledging an entry never made room")
		}
	}
	expect(alice, codec.CodeInboxBytesFull) // full again at three
}
