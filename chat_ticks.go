package main

import (
	"time"

	"github.com/chatd/chatd/codec"
)

// tickMarks remembers, per message id, when a tick was shown, for the
// short time in which a message's SENT and its first receipt may still
// cross (session.ticked). Some marks are never taken: the read receipt
// that follows the delivered one, a SENT whose receipt never comes (a
// recipient who blocked the sender). Kept for good, they grew by one
// entry per message read, for as long as chat ran. So a mark older than
// tickMemory goes when the map is next pruned, which happens when it has
// doubled since the last prune: amortized constant time per mark.
type tickMarks struct {
	at    map[codec.MsgID]time.Time
	limit int // prune when at reaches this many marks
}

const (
	tickMemory = time.Minute // far longer than a SENT and its receipt can be apart
	tickPrune  = 1024        // the fewest marks worth pruning
)

// mark records id's tick at now.
func (m *tickMarks) mark(id codec.MsgID, now time.Time) {
	if m.at == nil {
		m.at = make(map[codec.MsgID]time.Time)
	}
	if len(m.at) >= max(m.limit, tickPrune) {
		for k, t := range m.at {
			if now.Sub(t) > tickMemory {
				delete(m.at, k)
			}
		}
		m.limit = 2 * len(m.at)
	}
	m.at[id] = now
}

// take removes id's mark and reports whether there was one.
func (m *tickMarks) take(id codec.MsgID) bool {
	_, ok := m.at[id]
	delete(m.at, id)
	return ok
}
