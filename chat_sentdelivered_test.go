package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/history"
)

// TestSentDeliveredTickAfterRead: the Client stores a read receipt on its
// own goroutine, so the store may have the message read before the events
// goroutine handles the SENT_DELIVERED in front of it. The ✓✓ line shows
// anyway (a browser test caught it missing about one run in four).
func TestSentDeliveredTickAfterRead(t *testing.T) {
	store, err := history.Open(filepath.Join(t.TempDir(), "h.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	var out bytes.Buffer
	s := &session{store: store, out: &printer{w: &out}, names: map[uint64]string{2: "bob"}, ids: map[string]uint64{"bob": 2}}
	id := codec.MsgID{7}
	if err := store.AddOutgoing(history.Message{ID: id, Chat: 2, Outgoing: true, Time: time.Now(), Body: "hello bob"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.Advance(id, history.Read, time.Time{}); err != nil { // the read receipt's Store, first
		t.Fatal(err)
	}
	s.sentDelivered(&codec.SentDelivered{ID: id, Time: 1, Delivered: 2})
	if got := out.String(); !strings.Contains(got, `✓✓ to bob: "hello bob"`) {
		t.Fatalf("output %q, want the ✓✓ line", got)
	}
}
