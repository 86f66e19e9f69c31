package client

import (
	"time"

	"github.com/chatd/chatd/codec"
)

// Acknowledgements are cumulative (ACK seq covers every entry up to seq),
// so one ACK per batch does the work of one per entry. The server counts
// every frame against its rate limit (1,000 a second by default): a drain
// acknowledged entry by entry passes it and gets the client closed.
//
// An acker sends ACK for the highest seq the application has been handed
// when any of these holds:
//
//   - half the server's window (WELCOME.window) is unacknowledged, so the
//     server never stalls on a full window of entries;
//   - ackBytes of frames are unacknowledged, since the server also bounds
//     the window by bytes (and does not say how many);
//   - the read turn ended (nothing more waits on the connection) and
//     ackDelay has passed since the last ACK; otherwise a timer sends it
//     when ackDelay has passed.
//
// So a connection sends at most one ACK per ackDelay plus one per half
// window or ackBytes, whatever the rate of entries.
//
// ackDelay applies while a message or a group event waits for its ACK:
// the server turns that ACK into the sender's delivered tick. Receipts
// alone wait receiptAckDelay instead: nobody waits on their ACK (it only
// frees the server's window, which the half-window rule already guards),
// and a user sending now and then gets a receipt per message, so acking
// each at once would cost the server a read(2) per message for nothing.
//
// Rejected: one ACK per read turn without a delay (a trickle of entries
// arriving one per turn is again one ACK per entry); a fixed count only
// (entries held back by the byte bound would wait for a count that never
// comes).
const (
	ackDelay        = 10 * time.Millisecond
	receiptAckDelay = 250 * time.Millisecond
	ackBytes        = 256 << 10
)

// acker is owned by one pump (one connection).
type acker struct {
	conn  *Conn
	every int // entries: half the server's window

	seq    uint64 // highest seq handed on and not acknowledged; 0 when none
	n      int    // entries since the last ACK
	bytes  int    // their approximate frame bytes
	urgent bool   // a message or event among them: its sender waits for the tick
	last   time.Time
	timer  *time.Timer // armed while an ACK waits for ackDelay
}

func newAcker(conn *Conn) *acker {
	every := int(conn.Welcome.Window) / 2
	if every < 1 {
		every = 1
	}
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &acker{conn: conn, every: every, timer: t}
}

// add records that the entry seq (about size bytes) was handed on, and
// acknowledges now or later according to the rules above. idle says no
// more frames wait on the connection; urgent that the entry is not a
// receipt.
func (a *acker) add(seq uint64, size int, idle, urgent bool) {
	a.seq = seq
	a.n++
	a.bytes += size
	a.urgent = a.urgent || urgent
	a.maybe(idle)
}

func (a *acker) maybe(idle bool) {
	switch {
	case a.seq == 0:
	case a.n >= a.every || a.bytes >= ackBytes:
		a.send()
	case idle:
		delay := receiptAckDelay
		if a.urgent {
			delay = ackDelay
		}
		if wait := delay - time.Since(a.last); wait > 0 {
			a.timer.Reset(wait)
		} else {
			a.send()
		}
	}
}

// send acknowledges everything handed on so far.
func (a *acker) send() {
	a.timer.Stop()
	if a.seq == 0 {
		return
	}
	a.conn.Ack(a.seq, true) // a failure ends the connection; its entries come again
	a.seq, a.n, a.bytes, a.urgent, a.last = 0, 0, 0, false, time.Now()
}

func (a *acker) stop() { a.timer.Stop() }

// entrySeq returns the seq and approximate frame size of an inbox entry
// (0 for frames that are not entries).
func entrySeq(f codec.Frame) (seq uint64, size int) {
	switch f := f.(type) {
	case *codec.Deliver:
		return f.Seq, 64 + len(f.Body)
	case *codec.Receipt:
		return f.Seq, 64 + 16*f.IDs.Len()
	case *codec.GroupEvent:
		return f.Seq, 64 + len(f.Name) + len(f.Users)
	}
	return 0, 0
}
