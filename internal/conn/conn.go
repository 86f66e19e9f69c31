package conn

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/cloudwego/netpoll"
)

// Conn is one client connection. T is the handler's per-connection state,
// stored inline so that a connection costs one allocation.
type Conn[T any] struct {
	// Static after OnPrepare.
	nc     netpoll.Connection
	srv    *Server[T]
	fd     int32
	opened uint32 // clock reading at accept

	// Guarded by the registry shard lock.
	slot int32

	// Atomic: lastRead is written by OnRequest and read by the sweeper;
	// state holds statePreamble, stateAuthed and stateClosed.
	lastRead atomic.Uint32
	state    atomic.Uint32

	// Owned by OnRequest (netpoll runs one at a time per connection):
	// input in the current rate window, which began at rateStart.
	rateStart  uint32
	rateFrames uint32
	rateBytes  uint32

	// sec is the encrypted transport (nil for plaintext). Its handshake
	// belongs to OnRequest; its session is set under mu and then seals the
	// queue (under mu) and opens records in OnRequest.
	sec *secureConn

	// ws is the WebSocket layer (websocket.go); nil for a TCP connection.
	// Set in OnPrepare.
	ws *wsConn

	// turn collects the other connections this connection's current turn
	// queued frames on (FlushAfterTurn); owned by OnRequest, nil between
	// turns. The pointer fits the size class's slack (200 of 208 bytes for
	// the server's Conn): free for an idle connection.
	turn *Batch[T]

	// Guarded by mu.
	mu       sync.Mutex
	out      *[]byte // pending outbound bytes; nil when empty
	flushing bool    // a slow-path flusher owns the socket's write side
	lazy     bool    // out holds only lazy frames (lazy.go), so no producer flushes it

	// gen numbers the connections a Server accepted, static after
	// OnPrepare (Gen). It sits in the padding before State: free.
	gen uint32

	// State belongs to the Handler.
	State T
}

const (
	statePreamble uint32 = 1 << iota // the preamble was accepted
	stateAuthed                      // the handler authenticated the connection
	// stateClosed is the one closed flag. Whoever sets it first (close,
	// closeQuiet, slowConsumer, or the close callback when the peer went
	// away) owns the close; from then on Begin and Flush refuse, and only
	// the owner's last flush touches the socket.
	stateClosed
)

// Authenticated marks the connection as past authentication, exempting it
// from Config.AuthTimeout.
func (c *Conn[T]) Authenticated() { c.setState(stateAuthed) }

// Gen is the connection's number among those its Server accepted
// (wrapping at 2^32). With its address it names the connection beyond
// its life: a later connection may reuse a freed one's address.
func (c *Conn[T]) Gen() uint32 { return c.gen }

// IsAuthenticated reports whether Authenticated was called.
func (c *Conn[T]) IsAuthenticated() bool { return c.state.Load()&stateAuthed != 0 }

// isClosed reports whether the connection is closed or closing.
func (c *Conn[T]) isClosed() bool { return c.state.Load()&stateClosed != 0 }

// setState sets bit and reports whether this call set it.
func (c *Conn[T]) setState(bit uint32) bool { return c.state.Or(bit)&bit == 0 }

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
	if c.isClosed() {
		c.mu.Unlock()
		return nil, false
	}
	if c.out == nil {
		c.out = getBuf()
	}
	return *c.out, true
}

// End stores the queue extended since Begin and unlocks it. It returns true
// when the caller queued the first bytes the connection must send now (the
// queue was empty, or held only lazy frames): the caller must then Flush
// the connection (directly or through a Batch) once it has queued
// everything it has for it. A queue past Config.MaxOutbound closes the
// connection as a slow consumer, asynchronously: End's caller may hold
// locks that Handler.Closed takes.
func (c *Conn[T]) End(buf []byte) (first bool) {
	if len(buf) <= len(*c.out) { // a producer rolled back: no frame, no flush, no overflow
		*c.out = buf
		c.mu.Unlock()
		return false
	}
	first = len(*c.out) == 0 || c.lazy
	c.lazy = false
	return c.end(buf) && first
}

// EndLazy is End for a frame that may wait up to Config.LazyDelay for
// company (lazy.go): the caller does not flush. Nothing is lost if the
// connection closes meanwhile that would not be lost after a flush: both
// hand the bytes to a socket that is going away.
func (c *Conn[T]) EndLazy(buf []byte) {
	register := len(*c.out) == 0 && len(buf) > 0
	if register {
		c.lazy = true
	}
	if c.end(buf) && register {
		c.srv.lazy.add(c, c.srv.clock.now())
	}
}

// end stores buf as the queue, unlocks, and reports false (having started
// the close) when the queue passed MaxOutbound.
func (c *Conn[T]) end(buf []byte) bool {
	c.srv.stats.framesOut.Add(1) // one Begin/End pair queues one frame on every path that matters
	*c.out = buf
	over := len(buf) > c.srv.cfg.MaxOutbound
	c.mu.Unlock()
	if over {
		if c.srv.slowConsumer(c, "outbound queue full") {
			c.srv.bg.Add(1)
			go func() {
				defer c.srv.bg.Done()
				c.finish()
			}()
		}
		return false
	}
	return true
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
func (c *Conn[T]) Flush() { c.flush() }

// flush is Flush, reporting whether there was anything to write.
func (c *Conn[T]) flush() bool {
	c.mu.Lock()
	if c.isClosed() || c.flushing || !c.pendingLocked() {
		c.mu.Unlock()
		return false
	}
	bp, n, err := c.writeLocked()
	if err != nil {
		c.mu.Unlock()
		c.srv.closeQuiet(c)
		return true
	}
	if bp == nil {
		c.mu.Unlock()
		return true
	}
	// The socket is full: keep the queue's tail and let one goroutine wait
	// for the socket through netpoll, with the write timeout.
	c.flushing = true
	c.mu.Unlock()
	c.srv.stats.slowFlushes.Add(1)
	c.srv.bg.Add(1)
	go c.slowFlush(bp, n)
	return true
}

// pendingLocked reports whether anything waits to be written: queued
// frames, or a WebSocket connection's control frames. c.mu must be held.
func (c *Conn[T]) pendingLocked() bool {
	return (c.out != nil && len(*c.out) > 0) || (c.ws != nil && c.ws.pendingLocked())
}

// writeLocked takes the queue and writes what the socket takes now. It
// returns the buffer and the offset of what is left, or a nil buffer when
// everything went. c.mu must be held.
func (c *Conn[T]) writeLocked() (rest *[]byte, off int, err error) {
	bp, err := c.takeLocked()
	if err != nil {
		return nil, 0, err
	}
	n, err := writeNonblocking(int(c.fd), *bp)
	c.srv.stats.bytesOut.Add(uint64(n))
	c.srv.stats.writes.Add(1)
	if err != nil || n == len(*bp) {
		putBuf(bp)
		return nil, 0, err
	}
	return bp, n, nil
}

// takeLocked takes the queue for writing: the frames themselves, or, on an
// encrypted connection, records sealing them; on a WebSocket connection,
// inside a binary frame. c.mu must be held: sealing advances the send
// nonce, so records are made in the order they are sent.
func (c *Conn[T]) takeLocked() (*[]byte, error) {
	bp := c.out
	c.out, c.lazy = nil, false
	if bp == nil { // only WebSocket control frames wait
		bp = getBuf()
	}
	var err error
	if c.sec != nil && c.sec.sess != nil && len(*bp) > 0 {
		ct := getBuf()
		var sealed []byte
		sealed, err = c.sec.sess.Seal((*ct)[:0], *bp)
		putBuf(bp)
		*ct = sealed
		bp = ct
	}
	if c.ws != nil {
		bp = c.ws.frameLocked(bp)
	}
	return bp, err
}

// writeRaw writes bytes outside the queue and its encryption: the
// server's handshake messages (in a binary frame on a WebSocket
// connection). They are small and come first, so the socket takes them
// whole or the connection is failing.
func (c *Conn[T]) writeRaw(b []byte) error {
	if c.ws != nil {
		b = append(appendWSHeader(make([]byte, 0, 4+len(b)), opBinary, len(b)), b...)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writeWholeLocked(b)
}

// writeHTTP writes a WebSocket connection's HTTP response; upgraded marks
// the connection as upgraded in the same locked section, so no flush can
// put a WebSocket frame before the 101.
func (c *Conn[T]) writeHTTP(b []byte, upgraded bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	err := c.writeWholeLocked(b)
	c.ws.upgraded = upgraded && err == nil
	return err
}

func (c *Conn[T]) writeWholeLocked(b []byte) error {
	if c.isClosed() {
		return errors.New("conn: closed")
	}
	n, err := writeNonblocking(int(c.fd), b)
	if err == nil && n < len(b) {
		err = errors.New("conn: socket full during handshake")
	}
	return err
}

// writeNonblocking writes as much of b as the socket takes now.
//
// It calls send(2) raw, without telling the scheduler (entersyscall and
// exitsyscall, twice per message at a moderate rate), as netpoll's own
// read does: the socket is non-blocking, so the call copies what fits
// and returns, and the P it keeps meanwhile is kept for microseconds, as
// for any computation. sendto rather than write: it goes straight to the
// socket layer, past the file layer's checks (fdget_pos, rw_verify_area,
// fsnotify), and MSG_NOSIGNAL makes a write to a closed peer plain EPIPE,
// with no SIGPIPE raised for the runtime to ignore. A descriptor that is
// not a socket (ENOTSOCK: none of a server's, but a test may pass one) is
// written with write(2), after one refused sendto per call.
func writeNonblocking(fd int, b []byte) (int, error) {
	total := 0
	call, flags := uintptr(syscall.SYS_SENDTO), uintptr(syscall.MSG_NOSIGNAL)
	for total < len(b) {
		p := b[total:]
		n, _, errno := syscall.RawSyscall6(call, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), flags, 0, 0)
		switch errno {
		case 0:
			total += int(n)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return total, nil
		case syscall.ENOTSOCK:
			call, flags = syscall.SYS_WRITE, 0 // write(2) ignores the flags argument
		default:
			return total, errno
		}
	}
	return total, nil
}

// slowFlush writes through netpoll's Write, which copies the bytes into
// netpoll's output buffer and parks this goroutine on the poller until the
// socket drains or WriteTimeout passes. It holds no lock of ours while it
// waits: a close (from anywhere, even this goroutine) wakes netpoll's wait,
// and netpoll's own finalizer waits for Write to return before it frees
// the buffer. It runs until the queue is empty, then hands the socket back
// to the fast path.
func (c *Conn[T]) slowFlush(bp *[]byte, off int) {
	defer c.srv.bg.Done()
	for {
		n := len(*bp) - off
		_, err := c.nc.Write((*bp)[off:])
		putBuf(bp)
		switch {
		case errors.Is(err, netpoll.ErrWriteTimeout):
			if c.srv.slowConsumer(c, "write timeout") {
				c.finish()
			}
			return
		case err != nil:
			c.srv.closeQuiet(c)
			return
		}
		c.srv.stats.bytesOut.Add(uint64(n))
		c.mu.Lock()
		if !c.pendingLocked() || c.isClosed() {
			c.flushing = false
			c.mu.Unlock()
			return
		}
		bp, off, err = c.writeLocked()
		if err != nil || bp == nil {
			c.flushing = false
			c.mu.Unlock()
			if err != nil {
				c.srv.closeQuiet(c)
			}
			return
		}
		c.mu.Unlock()
	}
}

// Close closes the connection after writing what is queued, if the socket
// takes it now. It may run the close callback, and so Handler.Closed, on
// the calling goroutine (unless this connection's OnRequest is running,
// which then runs it on its way out): never call it holding c.mu or a lock
// Handler.Closed takes.
func (c *Conn[T]) Close() {
	if c.setState(stateClosed) {
		c.finish()
	}
}

// finish is the close owner's half: one last non-blocking write of the
// queue (unless a slow flusher owns the socket), then netpoll's close. Only
// the goroutine whose setState(stateClosed) returned true calls it.
func (c *Conn[T]) finish() {
	c.mu.Lock()
	if c.ws != nil {
		c.ws.closing = true // a close frame goes with the last bytes
	}
	if !c.flushing && c.pendingLocked() {
		if bp, _, _ := c.writeLocked(); bp != nil {
			putBuf(bp) // the peer gets what fit; the close follows anyway
		}
	}
	c.releaseLocked()
	c.mu.Unlock()
	c.nc.Close()
}

// releaseLocked returns the queue's buffer to the pool. c.mu must be held.
func (c *Conn[T]) releaseLocked() {
	if c.out != nil {
		putBuf(c.out)
		c.out, c.lazy = nil, false
	}
}

// onClose runs as a netpoll close callback, before netpoll closes the fd.
// Taking mu once after the closed flag is set is a barrier: a writer in the
// middle of write(2) finishes first, and every later one sees the flag.
func (c *Conn[T]) onClose(netpoll.Connection) error {
	c.setState(stateClosed)
	c.mu.Lock()
	c.releaseLocked()
	c.mu.Unlock()
	if c.ws != nil {
		c.ws.free()
	}
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

// FlushAfterTurn flushes o when c's current turn ends, with every other
// connection the turn queued frames on, each once: a turn of many SENDs
// to one recipient costs it one write, as nats-server's flushClients does
// at the end of a read. Only c's own turn (its Handler.Frame) may call it.
func (c *Conn[T]) FlushAfterTurn(o *Conn[T]) {
	if c.turn == nil {
		if b, ok := c.srv.turnBatches.Get().(*Batch[T]); ok {
			c.turn = b
		} else {
			c.turn = new(Batch[T])
		}
	}
	conns := c.turn.conns
	for i := len(conns) - 1; i >= 0 && i >= len(conns)-8; i-- { // the same recipient again, most likely
		if conns[i] == o {
			return
		}
	}
	c.turn.Add(o) // a repeat beyond the last 8 is flushed twice: the second finds nothing
}

// endTurn flushes what the turn queued on other connections.
func (c *Conn[T]) endTurn() {
	if b := c.turn; b != nil {
		c.turn = nil
		b.Flush()
		c.srv.turnBatches.Put(b)
	}
}

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

// LastRead is the server clock's reading (milliseconds since the server
// started, wrapping at 49 days) at the start of c's latest input turn: a
// time the handler can compare without reading the clock per frame.
func (c *Conn[T]) LastRead() uint32 { return c.lastRead.Load() }
