package server

import (
	"sync"
	"sync/atomic"

	"github.com/chatd/chatd/codec"
)

// commits runs the requests that must be durable before they are
// answered, and that are too rare to deserve a place in the inbox's
// lanes, off the event loop: group creates, changes and reads, PRIVACY
// and LOGOUT. Each job writes with Sync and then queues its answer and
// flushes the connection itself.
//
// A fixed number of lanes, each one goroutine with a bounded queue, so a
// burst of requests costs queued closures, never goroutines. A job goes
// to the lane its key picks: the group's id for a request about a group,
// the user's id for a create, a list, PRIVACY or LOGOUT. So the requests
// about one group, and one user's own requests, run and are answered in
// the order the event loop saw them; requests with different keys may be
// answered in any order (clients match answers by req). A full lane
// refuses the request (ERROR 27) rather than block the event loop.
//
// Tried and rejected: a goroutine per request (unbounded under load, and
// two changes to one group could commit out of order), and committing on
// the event loop under the group's lock (one fsync stalled every
// connection of that poller and every sender to the group).
type commits struct {
	lanes []chan func()
	wg    sync.WaitGroup

	// closing guards the lanes' channels: submit holds it shared and
	// finds closed set once close has run, since a login or a cluster
	// request that outlived the connections can still submit.
	closing sync.RWMutex
	closed  bool

	// hold, when set by a test, runs on the lane before every job.
	hold atomic.Pointer[func()]
}

const (
	commitLanes = 4
	commitDepth = 1024 // queued jobs per lane
)

func newCommits() *commits {
	q := &commits{lanes: make([]chan func(), commitLanes)}
	for i := range q.lanes {
		q.lanes[i] = make(chan func(), commitDepth)
		q.wg.Add(1)
		go q.run(q.lanes[i])
	}
	return q
}

func (q *commits) run(lane chan func()) {
	defer q.wg.Done()
	for job := range lane {
		if h := q.hold.Load(); h != nil {
			(*h)()
		}
		job()
	}
}

// submit queues job on key's lane without blocking; false when the lane
// is full or closed.
func (q *commits) submit(key uint64, job func()) bool {
	q.closing.RLock()
	defer q.closing.RUnlock()
	if q.closed {
		return false
	}
	select {
	case q.lanes[key%uint64(len(q.lanes))] <- job:
		return true
	default:
		return false
	}
}

// barrier returns once every job queued before it has run.
func (q *commits) barrier() {
	var wg sync.WaitGroup
	q.closing.RLock() // only while queueing: close runs what is queued
	if !q.closed {
		for _, l := range q.lanes {
			wg.Add(1)
			l <- wg.Done
		}
	}
	q.closing.RUnlock()
	wg.Wait()
}

// close runs what is queued and stops the lanes; a later submit is
// refused.
func (q *commits) close() {
	q.closing.Lock()
	q.closed = true
	for _, l := range q.lanes {
		close(l)
	}
	q.closing.Unlock()
	q.wg.Wait()
}

// atHome runs job on key's commit lane and answers c with what it
// returns, or with ERROR 63 (moved) if key's shard left this node before
// the job ran, or ERROR 27 if the lane is full.
func (s *Server) atHome(c *Conn, key uint64, req uint32, job func() []byte, moved string) {
	if !s.commits.submit(key, func() {
		if s.cl != nil && !s.local(key) {
			s.reply(c, codec.AppendError(nil, codec.CodeUnavailable, req, nil, moved))
		} else {
			s.reply(c, job())
		}
		c.Flush()
	}) {
		s.counters.busy.Add(1)
		s.errorTo(c, codec.CodeBusy, req, nil, "too many requests queued; retry")
	}
}
