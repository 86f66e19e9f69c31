package conn

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cloudwego/netpoll"
)

// Conn is one client connection. T is the handler's per-connection state,
// stored inline so that a connection costs one allocation.
type Conn[T any] struct {
	// Static after OnPrepare.
	nc  netpoll.Connection
	srv *Server[T]
	fd  int32

	// Owned by the sweeper's registry (guarded by the registry shard lock).
	slot int32

	// lastRead is the coarse clock (seconds since the server started) when
	// input last arrived; opened is when the connection was accepted.
	lastRead atomic.Uint32
	opened   uint32

	// state holds stateAuthed, stateClosing and friends.
	state atomic.Uint32

	// Owned by OnRequest (one at a time per connection): input this second.
	rateSec    uint32
	rateFrames uint32
	rateBytes  uint32

	// Guarded by mu.
	mu       sync.Mutex
	out      *[]byte // pending outbound bytes; nil when empty
	closed   bool    // set by the close callback; no write may touch the socket after it
	flushing bool    // a slow-path flusher owns the socket

	// wmu is held by the slow-path flusher while it uses netpoll's writer;
	// the close callback takes it to wait that flusher out.
	wmu sync.Mutex

	// sec is the encrypted transport (nil for plaintext). Its handshake
	// belongs to OnRequest; its session is set under mu and then seals the
	// queue in Flush (under mu) and opens records in OnRequest.
	sec *secureConn

	// State belongs to the Handler.
	State T
}

const (
	statePreamble uint32 = 1 << iota // the preamble was accepted
	stateAuthed                      // the handler authenticated the connection
	stateClosing                     // Close was called
)

// Authenticated marks the connection as past authentication, exempting it
// from Config.AuthTimeout.
func (c *Conn[T]) Authenticated() { c.setState(stateAuthed) }

// IsAuthenticated reports whether Authenticated was called.
func (c *Conn[T]) IsAuthenticated() bool { return c.state.Load()&stateAuthed != 0 }

func (c *Conn[T]) setState(bit uint32) bool {
	for {
		old := c.state.Load()
		if old&bit != 0 {
			return false
		}
		if c.state.CompareAndSwap(old, old|bit) {
			return true
		}
	}
}

// RemoteAddr returns the peer's address as text.
func (c *Conn[T]) RemoteAddr() string {
	if a := c.nc.RemoteAddr(); a != nil {
		return a.String()
	}
	return ""
}

// Begin locks the outbound queue and returns it for appending frames. It
// returns ok=false, unlocked, when the connection is closed. Every Begin
// that returns ok must be followed by End with the extended slice.
func (c *Conn[T]) Begin() (buf []byte, ok bool) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, false
	}
	if c.out == nil {
		c.out = getBuf()
	}
	return *c.out, true
}

// End stores the queue extended since Begin and unlocks it. It returns true
// when the caller queued the first bytes since the last flush: the caller
// must then Flush the connection (directly or through a Batch) once it has
// queued everything it has for it. A queue past Config.MaxOutbound closes
// the connection as a slow consumer.
func (c *Conn[T]) End(buf []byte) (first bool) {
	c.srv.stats.framesOut.Add(1) // one Begin/End pair queues one frame on every path that matters
	prev := len(*c.out)
	*c.out = buf
	over := len(buf) > c.srv.cfg.MaxOutbound
	c.mu.Unlock()
	if over {
		c.srv.slowConsumer(c, "outbound queue full")
		return false
	}
	return prev == 0 && len(buf) > 0
}

// Write queues one encoded frame; a convenience around Begin and End.
func (c *Conn[T]) Write(frame []byte) (first bool) {
	buf, ok := c.Begin()
	if !ok {
		return false
	}
	return c.End(append(buf, frame...))
}

// Flush writes the queued bytes to the socket without blocking. What the
// kernel does not take is handed to the slow-path flusher.
func (c *Conn[T]) Flush() {
	c.mu.Lock()
	if c.closed || c.flushing || c.out == nil || len(*c.out) == 0 {
		c.mu.Unlock()
		return
	}
	bp, err := c.takeLocked()
	if err != nil {
		c.mu.Unlock()
		c.srv.closeQuiet(c)
		return
	}
	buf := *bp
	n, err := writeNonblocking(int(c.fd), buf)
	if n == len(buf) {
		c.mu.Unlock()
		putBuf(bp)
		c.srv.stats.bytesOut.Add(uint64(n))
		return
	}
	if err != nil {
		c.mu.Unlock()
		c.srv.closeQuiet(c)
		return
	}
	// The socket is full: keep the queue's tail and let one goroutine wait
	// for the socket through netpoll, with the write timeout.
	c.flushing = true
	c.mu.Unlock()
	c.srv.stats.bytesOut.Add(uint64(n))
	c.srv.stats.slowFlushes.Add(1)
	go c.slowFlush(bp, n)
}

// takeLocked takes the queue for writing: the frames themselves, or, on an
// encrypted connection, records sealing them. c.mu must be held: sealing
// advances the send nonce, so records are made in the order they are sent.
func (c *Conn[T]) takeLocked() (*[]byte, error) {
	bp := c.out
	c.out = nil
	if c.sec == nil || c.sec.sess == nil {
		return bp, nil
	}
	ct := getBuf()
	sealed, err := c.sec.sess.Seal((*ct)[:0], *bp)
	putBuf(bp)
	*ct = sealed
	return ct, err
}

// writeRaw writes bytes outside the queue and its encryption: the
// server's handshake messages. They are small and come first, so the
// socket takes them whole or the connection is failing.
func (c *Conn[T]) writeRaw(b []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errors.New("conn: closed")
	}
	n, err := writeNonblocking(int(c.fd), b)
	if err == nil && n < len(b) {
		err = errors.New("conn: socket full during handshake")
	}
	return err
}

// writeNonblocking writes as much of b as the socket takes now.
func writeNonblocking(fd int, b []byte) (int, error) {
	total := 0
	for total < len(b) {
		n, err := syscall.Write(fd, b[total:])
		if n > 0 {
			total += n
		}
		switch {
		case err == nil:
		case errors.Is(err, syscall.EINTR):
		case errors.Is(err, syscall.EAGAIN):
			return total, nil
		default:
			return total, err
		}
	}
	return total, nil
}

// slowFlush writes through netpoll's writer, which parks this goroutine on
// the poller until the socket drains or WriteTimeout passes. It runs until
// the queue is empty, then hands the socket back to the fast path.
func (c *Conn[T]) slowFlush(bp *[]byte, off int) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	for {
		c.mu.Lock()
		closed := c.closed
		c.mu.Unlock()
		if closed {
			return
		}
		w := c.nc.Writer()
		n := len(*bp) - off
		if _, err := w.WriteBinary((*bp)[off:]); err != nil {
			c.srv.closeQuiet(c)
			return
		}
		if err := w.Flush(); err != nil {
			// netpoll may still reference the buffer: leave it to the GC.
			c.srv.slowConsumer(c, "write timeout")
			return
		}
		c.srv.stats.bytesOut.Add(uint64(n))
		putBuf(bp)
		c.mu.Lock()
		if c.out == nil || len(*c.out) == 0 || c.closed {
			c.flushing = false
			c.mu.Unlock()
			return
		}
		var err error
		bp, off = nil, 0
		if bp, err = c.takeLocked(); err != nil {
			c.mu.Unlock()
			c.srv.closeQuiet(c)
			return
		}
		c.mu.Unlock()
	}
}

// Close closes the connection after writing what is queued, if the socket
// takes it now. It is safe from any goroutine that does not hold c.mu.
func (c *Conn[T]) Close() {
	if !c.setState(stateClosing) {
		return
	}
	c.Flush()
	c.nc.Close()
}

// onClose runs as a netpoll close callback: before netpoll closes the fd.
func (c *Conn[T]) onClose(netpoll.Connection) error {
	c.mu.Lock()
	c.closed = true
	bp := c.out
	c.out = nil
	c.mu.Unlock()
	if bp != nil {
		putBuf(bp)
	}
	// A slow flusher returns promptly: netpoll fails its wait before it
	// runs the close callbacks.
	c.wmu.Lock()
	c.wmu.Unlock() //nolint:staticcheck // empty critical section: waits for the flusher
	c.srv.unregister(c)
	return nil
}

// Conn is the context netpoll hands back to OnRequest, which saves a
// context.WithValue allocation per connection.
var _ context.Context = (*Conn[struct{}])(nil)

func (c *Conn[T]) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c *Conn[T]) Done() <-chan struct{}       { return nil }
func (c *Conn[T]) Err() error                  { return nil }
func (c *Conn[T]) Value(any) any               { return nil }

// Batch collects connections whose queues a producer filled, so that each
// is flushed once after the producer's whole batch of work. It is not safe
// for concurrent use; each producer keeps its own.
type Batch[T any] struct {
	conns []*Conn[T]
}

// Add records c for flushing (call it when End returned true).
func (b *Batch[T]) Add(c *Conn[T]) { b.conns = append(b.conns, c) }

// Flush flushes every recorded connection and empties the batch.
func (b *Batch[T]) Flush() {
	for i, c := range b.conns {
		c.Flush()
		b.conns[i] = nil
	}
	b.conns = b.conns[:0]
}

// Outbound buffers come from a pool, so an idle connection holds none.
// Buffers that grew past maxPooled are dropped rather than kept.
const (
	initialBuf = 2 << 10
	maxPooled  = 256 << 10
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, initialBuf); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(bp *[]byte) {
	if cap(*bp) > maxPooled {
		return
	}
	*bp = (*bp)[:0]
	bufPool.Put(bp)
}
