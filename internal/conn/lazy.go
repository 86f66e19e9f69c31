package conn

import (
	"sync"
	"time"
)

// Lazy frames. A frame nobody waits for within milliseconds (a delivered
// or read receipt: a tick on the sender's screen) need not cost a write(2)
// of its own. EndLazy queues it without asking for a flush; it leaves with
// the next frame that is flushed to the same connection (a SENT, a
// DELIVER, a PONG), or after Config.LazyDelay, whichever comes first. At
// a few messages a second per connection, which is where chat servers
// live, that folds most receipts into the write of a SENT, and one write
// syscall costs more CPU than routing the receipt did.
//
// The delay is bounded and small against what a person notices on a tick
// (the default 50 ms is well under the 100 ms taken as "instant").
//
// Rejected: a per-connection timer (a runtime timer per connection with a
// lazy frame, tens of thousands at once); flushing lazy frames from the
// sweeper (its 250 ms period is the delay's bound, too coarse); batching
// eager frames the same way (SENT and DELIVER are what latency is
// measured by).

// lazyQueue holds connections whose queues hold only lazy bytes, oldest
// first. One goroutine (flushLazy) writes them when they come due; any
// eager flush before that takes their bytes along, and the later flush
// then finds the queue empty.
type lazyQueue[T any] struct {
	mu      sync.Mutex
	due     []lazyConn[T] // in order of registration, so of due time
	head    int           // due[:head] were flushed
	waiting bool          // the flusher sleeps until kicked
	kick    chan struct{}
}

type lazyConn[T any] struct {
	c  *Conn[T]
	at uint32 // clock reading at registration
}

// add registers c, whose queue just took its first (lazy) bytes.
func (q *lazyQueue[T]) add(c *Conn[T], now uint32) {
	q.mu.Lock()
	q.due = append(q.due, lazyConn[T]{c, now})
	wake := q.waiting
	q.waiting = false
	q.mu.Unlock()
	if wake {
		select {
		case q.kick <- struct{}{}:
		default:
		}
	}
}

// flushLazy runs until stop closes: it flushes each registered connection
// once its delay has passed, sleeping until the oldest is due, or until
// kicked when none waits.
func (s *Server[T]) flushLazy() {
	defer s.sweeper.Done()
	q := &s.lazy
	delay := uint32(s.cfg.LazyDelay / time.Millisecond)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var batch []*Conn[T]
	for {
		now := s.clock.now()
		q.mu.Lock()
		batch = batch[:0]
		for q.head < len(q.due) && int32(now-q.due[q.head].at) >= int32(delay) {
			batch = append(batch, q.due[q.head].c)
			q.due[q.head] = lazyConn[T]{}
			q.head++
		}
		idle := q.head == len(q.due)
		var wait time.Duration
		if idle {
			q.due, q.head = q.due[:0], 0
			q.waiting = true
		} else {
			wait = time.Duration(max(1, int32(q.due[q.head].at+delay-now))) * time.Millisecond
			if q.head > len(q.due)/2 { // keep the slice from creeping
				n := copy(q.due, q.due[q.head:])
				clear(q.due[n:])
				q.due, q.head = q.due[:n], 0
			}
		}
		q.mu.Unlock()
		wrote := 0
		for i, c := range batch {
			if c.flush() { // false: an eager frame took the lazy ones along
				wrote++
			}
			batch[i] = nil
		}
		s.stats.lazy.Add(uint64(wrote))
		if idle {
			select {
			case <-q.kick:
				continue
			case <-s.stop:
				return // Shutdown closes every connection, and a close writes its queue
			}
		}
		timer.Reset(wait)
		select {
		case <-timer.C:
		case <-s.stop:
			return
		}
	}
}
