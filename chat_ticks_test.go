package main

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/chatd/chatd/codec"
)

// TestTicksOrderAndForget: a SENT after its receipt is skipped, a receipt
// after its SENT clears the mark, and marks nobody takes (the read
// receipt after the delivered one, here 10,000 of them) stay bounded:
// those older than tickMemory go as the map grows.
func TestTicksOrderAndForget(t *testing.T) {
	var s session
	a, b := codec.MsgID{1}, codec.MsgID{2}
	if s.ticked(a, false) || !s.ticked(a, true) {
		t.Fatal("a SENT after its receipt was not skipped")
	}
	if s.ticked(b, true) || s.ticked(b, false) || s.ticked(b, true) {
		t.Fatal("SENT then receipt: a later SENT of the same id skipped, or the first one")
	}
	start := time.Now().Add(-time.Hour)
	for i := range 10_000 {
		var id codec.MsgID
		binary.BigEndian.PutUint64(id[:], uint64(i+10))
		s.receiptFirst.mark(id, start.Add(time.Duration(i)*time.Second)) // a read receipt a second, for hours
	}
	if n := len(s.receiptFirst.at); n > 2*tickPrune+int(tickMemory/time.Second)*2 {
		t.Fatalf("%d marks kept of 10,000 nobody takes", n)
	}
}
