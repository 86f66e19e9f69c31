package conn

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatd/chatd/codec"
)

// clock reads milliseconds since the server started, from the monotonic
// clock: one vDSO call per accept and per OnRequest turn (not per frame),
// and a stamp that fits in 4 bytes. Differences are taken modulo 2^32, so
// they stay right across the wrap at 49 days as long as they are shorter
// than that, which Keepalive (at most 18 h) and AuthTimeout guarantee.
type clock struct{ start time.Time }

func (k *clock) now() uint32 { return uint32(time.Since(k.start) / time.Millisecond) }

// registry holds every open connection so the sweeper can visit them. It
// is sharded so that accepts and closes on different cores rarely meet on
// a lock; 4 shards per core follows the reasoning of pebble's cache
// (contention showed at 2 per core). A connection remembers its slot, so
// removal is a swap with the shard's last entry.
type registry[T any] struct {
	shards []regShard[T]
	n      atomic.Int64
}

type regShard[T any] struct {
	mu    sync.Mutex
	conns []*Conn[T]
	_     [40]byte // keep shards on separate cache lines
}

func (r *registry[T]) init() {
	r.shards = make([]regShard[T], 4*runtime.GOMAXPROCS(0))
}

func (r *registry[T]) shard(c *Conn[T]) *regShard[T] {
	return &r.shards[int(uint32(c.fd))%len(r.shards)]
}

func (r *registry[T]) add(c *Conn[T]) {
	sh := r.shard(c)
	sh.mu.Lock()
	c.slot = int32(len(sh.conns))
	sh.conns = append(sh.conns, c)
	sh.mu.Unlock()
	r.n.Add(1)
}

func (r *registry[T]) remove(c *Conn[T]) {
	sh := r.shard(c)
	sh.mu.Lock()
	i := int(c.slot)
	if i >= 0 && i < len(sh.conns) && sh.conns[i] == c {
		last := len(sh.conns) - 1
		sh.conns[i] = sh.conns[last]
		sh.conns[i].slot = int32(i)
		sh.conns[last] = nil
		sh.conns = sh.conns[:last]
		c.slot = -1
		r.n.Add(-1)
	}
	sh.mu.Unlock()
}

func (r *registry[T]) count() int { return int(r.n.Load()) }

// each visits every connection; fn runs without the shard lock held, on a
// snapshot taken a shard at a time.
func (r *registry[T]) each(fn func(*Conn[T])) {
	var snap []*Conn[T]
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		snap = append(snap[:0], sh.conns...)
		sh.mu.Unlock()
		for _, c := range snap {
			fn(c)
		}
	}
}

// sweep closes connections that stayed silent past Keepalive and those not
// authenticated within AuthTimeout (netpoll's idle timeout only sets TCP
// keepalive, which never notices a live but silent client).
//
// Every SweepInterval it checks the connections not yet authenticated,
// which wait in accept order in authq, so an auth deadline T is met
// between T and T + SweepInterval. Silence is checked by a visit to every
// connection (two atomic loads through a pointer each), but only every
// max(SweepInterval, Keepalive/64): a keepalive deadline T is met between
// T and T + 2.8 s with the default 3 minutes. Visiting a million
// connections four times a second would cost most of a core in cache
// misses; the same pass every 2.8 s costs a twelfth of that. The shard
// lock is held only while looking.
func (s *Server[T]) sweep() {
	defer s.sweeper.Done()
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	keep := uint32(s.cfg.Keepalive / time.Millisecond)
	auth := uint32(s.cfg.AuthTimeout / time.Millisecond)
	every := idleEvery(s.cfg.Keepalive, s.cfg.SweepInterval)
	var idle, unauth []*Conn[T]
	for tick := 0; ; tick++ {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			s.stats.bad.summarize(s.log, now, s.cfg.LogInterval)
		}
		unauth = s.authq.expired(unauth[:0], s.clock.now(), auth)
		idle = idle[:0]
		if tick%every == 0 {
			for i := range s.reg.shards {
				sh := &s.reg.shards[i]
				now := s.clock.now()
				sh.mu.Lock()
				for _, c := range sh.conns {
					if older(now, c.lastRead.Load(), keep) {
						idle = append(idle, c)
					}
				}
				sh.mu.Unlock()
			}
		}
		for _, c := range idle {
			s.expire(c, ReasonIdle, (&codec.Kicked{Reason: codec.KickIdle}).Append)
		}
		for _, c := range unauth {
			s.expire(c, ReasonAuthTimeout, func(b []byte) []byte {
				return codec.AppendError(b, codec.CodeAuthTimeout, 0, nil, "not authenticated in time")
			})
		}
		clear(idle[:cap(idle)])
		clear(unauth[:cap(unauth)])
	}
}

// idleEvery is how many sweep ticks apart the idle passes are: as many as
// fit in keepalive/64, at least one.
func idleEvery(keepalive, sweep time.Duration) int {
	return max(1, int(keepalive/64/sweep))
}

// authQueue holds accepted connections in accept order until they
// authenticate, close or pass AuthTimeout, so that the auth deadline is
// checked every sweep among the few connections it concerns, not the
// million that logged in long ago.
type authQueue[T any] struct {
	mu   sync.Mutex
	q    []*Conn[T]
	head int
}

func (a *authQueue[T]) add(c *Conn[T]) {
	a.mu.Lock()
	a.q = append(a.q, c)
	a.mu.Unlock()
}

// expired appends to dst the connections past the auth deadline and still
// unauthenticated, dropping from the queue those and the ones that
// authenticated or closed. Accept order is (to the millisecond) the order
// of the deadlines, so it stops at the first still within it.
func (a *authQueue[T]) expired(dst []*Conn[T], now, auth uint32) []*Conn[T] {
	a.mu.Lock()
	defer a.mu.Unlock()
	for a.head < len(a.q) {
		c := a.q[a.head]
		st := c.state.Load()
		if st&(stateAuthed|stateClosed) == 0 {
			if !older(now, c.opened, auth) {
				break
			}
			dst = append(dst, c)
		}
		a.q[a.head] = nil
		a.head++
	}
	if a.head == len(a.q) {
		a.q, a.head = a.q[:0], 0
	} else if a.head > len(a.q)/2 { // keep the slice from creeping
		n := copy(a.q, a.q[a.head:])
		clear(a.q[n:])
		a.q, a.head = a.q[:n], 0
	}
	return dst
}

// expire closes a connection past a deadline, telling it why first.
func (s *Server[T]) expire(c *Conn[T], why Reason, frame func([]byte) []byte) {
	buf, ok := c.Begin()
	if !ok {
		return // closed meanwhile
	}
	c.End(frame(buf))
	s.stats.bad.note(s.log, why, c.RemoteAddr, why.String())
	c.Close()
}

// older reports whether a stamp is more than limit milliseconds before now.
// Stamps are whole milliseconds, so "more than" means at least limit has
// really passed. An input turn or an accept may stamp a time later than
// the sweeper's now (read before it took the shard lock): that is no age
// at all, never an unsigned wrap to four billion milliseconds. The
// difference is signed, so the clock's own wrap at 49 days keeps working
// (limits are far below 2^31 ms).
func older(now, stamp, limit uint32) bool {
	d := int32(now - stamp)
	return d > 0 && uint32(d) > limit
}
