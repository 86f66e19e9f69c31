package conn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/secure"
	"github.com/cloudwego/netpoll"
	"go.uber.org/zap"
)

// Handler gives frames their meaning.
type Handler[T any] interface {
	// Frame handles one whole frame from c. body is valid only until
	// Frame returns. Frames of one connection arrive one at a time, in
	// order. Returning an error closes the connection after flushing what
	// is queued (queue an ERROR frame first to tell the client why).
	Frame(c *Conn[T], t codec.Type, body []byte) error
	// Closed is called once when c has closed, never concurrently with
	// Frame for c. It may run on the poller goroutine: it must not block.
	Closed(c *Conn[T])
}

// Admitter decides whether to take a new connection. A refusal with a
// frame sends that frame (for example GOAWAY) and closes the connection.
type Admitter func() (ok bool, refusal []byte)

// Server accepts connections and feeds their frames to a Handler.
type Server[T any] struct {
	cfg     Config
	log     *zap.Logger
	handler Handler[T]
	inline  InlineHandler // handler, if it names types that never wait (inline.go)
	// turnBatches lends turns their Batch of connections to flush at the
	// end (Conn.FlushAfterTurn).
	turnBatches sync.Pool
	admit       atomic.Pointer[Admitter]

	el netpoll.EventLoop
	ln netpoll.Listener
	// wsel and wsln serve WebSocket clients (ListenWS). netpoll's
	// EventLoop serves one listener, so this is a second one, sharing the
	// same pollers, goroutine pool and callbacks.
	wsel  netpoll.EventLoop
	wsln  netpoll.Listener
	reg   registry[T]
	clock clock
	stats Stats
	lazy  lazyQueue[T]
	authq authQueue[T] // sweep.go

	stop     chan struct{}
	stopOnce sync.Once
	// stopped is set by StopAccepting: a Serve that meets the closed
	// listener (a Close right after start) ends cleanly, not with EBADF.
	stopped atomic.Bool
	gens    atomic.Uint32 // the last Conn.gen given
	startMu sync.Mutex    // orders Serve's sweeper.Add before Shutdown's Wait
	sweeper sync.WaitGroup
	// bg counts slow-path flushers and asynchronous closes, which
	// Shutdown waits for.
	bg sync.WaitGroup
}

// Stats counts connection-level events; read them with Snapshot.
type Stats struct {
	accepted, closed, rejected atomic.Uint64
	bytesIn, bytesOut          atomic.Uint64
	frames, framesOut          atomic.Uint64
	slowFlushes                atomic.Uint64
	// turns counts OnRequest calls; inlined those run on the poller
	// (inline.go), the rest each a hand-off to a worker; writes the
	// write(2) calls of the fast path; lazy the flushes the lazy flusher
	// made.
	turns, inlined, writes, lazy atomic.Uint64
	bad                          badInput
}

// Snapshot is a copy of Stats.
type Snapshot struct {
	Open, Accepted, Closed, Rejected uint64
	BytesIn, BytesOut, FramesIn      uint64
	FramesOut                        uint64
	Turns, InlineTurns               uint64
	Writes, LazyFlushes              uint64
	SlowConsumers, SlowFlushes       uint64
	IdleClosed, AuthTimeouts         uint64
	ProtocolErrors, ReadTimeouts     uint64
	RateLimited                      uint64
	// BadInput counts connections closed for each Reason (the fields
	// above from SlowConsumers on are sums or copies of these).
	BadInput [NumReasons]uint64
}

// New creates a server; Serve starts it.
func New[T any](cfg Config, h Handler[T]) (*Server[T], error) {
	cfg.setDefaults()
	cfg.WebSocket.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server[T]{cfg: cfg, log: cfg.Logger, handler: h, stop: make(chan struct{})}
	s.inline, _ = h.(InlineHandler)
	s.reg.init()
	s.clock.start = time.Now()
	s.lazy.kick = make(chan struct{}, 1)
	el, err := netpoll.NewEventLoop(s.onRequest,
		netpoll.WithOnPrepare(s.onPrepare),
		netpoll.WithReadTimeout(cfg.ReadTimeout),
		netpoll.WithWriteTimeout(cfg.WriteTimeout),
	)
	if err != nil {
		return nil, fmt.Errorf("conn: event loop: %w", err)
	}
	s.el = el
	return s, nil
}

// SetAdmitter installs the admission check run for every new connection.
func (s *Server[T]) SetAdmitter(a Admitter) { s.admit.Store(&a) }

// Listen binds addr. Call Serve next.
func (s *Server[T]) Listen(addr string) error {
	ln, err := netpoll.CreateListener("tcp", addr)
	if err != nil {
		return fmt.Errorf("conn: listen %s: %w", addr, err)
	}
	s.ln = ln
	return nil
}

// ListenWS binds addr for WebSocket clients (websocket.go); Serve serves
// it beside the TCP listener.
func (s *Server[T]) ListenWS(addr string) error {
	el, err := netpoll.NewEventLoop(s.onRequest,
		netpoll.WithOnPrepare(s.onPrepareWS),
		netpoll.WithReadTimeout(s.cfg.ReadTimeout),
		netpoll.WithWriteTimeout(s.cfg.WriteTimeout),
	)
	if err != nil {
		return fmt.Errorf("conn: websocket event loop: %w", err)
	}
	ln, err := netpoll.CreateListener("tcp", addr)
	if err != nil {
		return fmt.Errorf("conn: listen websocket %s: %w", addr, err)
	}
	s.wsel, s.wsln = el, ln
	return nil
}

// WSAddr returns the WebSocket listener's address, nil without ListenWS.
func (s *Server[T]) WSAddr() net.Addr {
	if s.wsln == nil {
		return nil
	}
	return s.wsln.Addr()
}

// Addr returns the bound address (after Listen).
func (s *Server[T]) Addr() net.Addr { return s.ln.Addr() }

// Serve runs the event loop and the sweeper until Shutdown.
func (s *Server[T]) Serve() error {
	if s.ln == nil {
		return errors.New("conn: Serve before Listen")
	}
	// Add before Shutdown's Wait, or not at all: a Serve that starts
	// after StopAccepting (a Close right after start) returns at once.
	s.startMu.Lock()
	if s.stopped.Load() {
		s.startMu.Unlock()
		return nil
	}
	s.sweeper.Add(2)
	if s.wsln != nil {
		s.sweeper.Add(1)
	}
	s.startMu.Unlock()
	go s.sweep()
	go s.flushLazy()
	if s.wsln != nil {
		go func() {
			defer s.sweeper.Done()
			err := s.wsel.Serve(s.wsln)
			if err != nil && !errors.Is(err, net.ErrClosed) && !s.stopped.Load() {
				s.log.Error("websocket listener stopped", zap.Error(err))
			}
		}()
	}
	err := s.el.Serve(s.ln)
	if err != nil && !errors.Is(err, net.ErrClosed) && !s.stopped.Load() {
		return fmt.Errorf("conn: serve: %w", err)
	}
	return nil
}

// StopAccepting closes the listener; existing connections stay open.
func (s *Server[T]) StopAccepting() {
	s.startMu.Lock()
	s.stopped.Store(true)
	s.startMu.Unlock()
	if s.ln != nil {
		s.ln.Close()
	}
	if s.wsln != nil {
		s.wsln.Close()
	}
}

// Shutdown stops accepting, closes every connection and stops the sweeper.
func (s *Server[T]) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() { close(s.stop) })
	s.StopAccepting()
	s.Each(func(c *Conn[T]) { c.Close() })
	err := s.el.Shutdown(ctx)
	if s.wsel != nil {
		err = errors.Join(err, s.wsel.Shutdown(ctx))
	}
	s.sweeper.Wait()
	// Wait for close callbacks still running on the poller or pool.
	for s.reg.count() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("conn: shutdown: %d connections still closing: %w", s.reg.count(), ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	// Every connection is closed, so no flusher starts any more and those
	// still running return as soon as netpoll fails their write.
	bgDone := make(chan struct{})
	go func() { s.bg.Wait(); close(bgDone) }()
	select {
	case <-bgDone:
	case <-ctx.Done():
		return fmt.Errorf("conn: shutdown: flushers still running: %w", ctx.Err())
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("conn: shutdown: %w", err)
	}
	return nil
}

// Each calls fn for every open connection. fn must not block.
func (s *Server[T]) Each(fn func(c *Conn[T])) { s.reg.each(fn) }

// Len returns the number of open connections.
func (s *Server[T]) Len() int { return s.reg.count() }

// Snapshot returns the counters.
func (s *Server[T]) Snapshot() Snapshot {
	st := &s.stats
	snap := Snapshot{
		Open: uint64(s.reg.count()), Accepted: st.accepted.Load(), Closed: st.closed.Load(),
		Rejected: st.rejected.Load(), BytesIn: st.bytesIn.Load(), BytesOut: st.bytesOut.Load(),
		FramesIn: st.frames.Load(), FramesOut: st.framesOut.Load(), SlowFlushes: st.slowFlushes.Load(),
		Turns: st.turns.Load(), InlineTurns: st.inlined.Load(), Writes: st.writes.Load(), LazyFlushes: st.lazy.Load(),
	}
	for r := range snap.BadInput {
		snap.BadInput[r] = st.bad.total[r].Load()
	}
	b := &snap.BadInput
	snap.SlowConsumers, snap.IdleClosed, snap.AuthTimeouts = b[ReasonSlowConsumer], b[ReasonIdle], b[ReasonAuthTimeout]
	snap.ReadTimeouts, snap.RateLimited = b[ReasonReadTimeout], b[ReasonRateLimited]
	for r := ReasonBadPreamble; r <= ReasonRateLimited; r++ {
		snap.ProtocolErrors += b[r]
	}
	snap.ProtocolErrors += b[ReasonUpgrade] + b[ReasonWSFrame]
	return snap
}

// onPrepare runs on the poller for each accepted socket: it must be cheap.
func (s *Server[T]) onPrepare(nc netpoll.Connection) context.Context { return s.prepare(nc, nil) }

// onPrepareWS is onPrepare for the WebSocket listener.
func (s *Server[T]) onPrepareWS(nc netpoll.Connection) context.Context {
	return s.prepare(nc, &wsConn{})
}

// wsRefusal answers a WebSocket client the server does not take (the
// request has not been read, so it cannot be upgraded to carry a GOAWAY).
var wsRefusal = httpError(503)

func (s *Server[T]) prepare(nc netpoll.Connection, w *wsConn) context.Context {
	c := &Conn[T]{nc: nc, srv: s, fd: int32(nc.(netpoll.Conn).Fd()), ws: w, gen: s.gens.Add(1)}
	now := s.clock.now()
	c.opened, c.rateStart = now, now
	c.lastRead.Store(now)
	if a := s.admit.Load(); a != nil {
		if ok, refusal := (*a)(); !ok {
			s.stats.rejected.Add(1)
			if w != nil {
				refusal = wsRefusal
			}
			if len(refusal) > 0 {
				writeNonblocking(int(c.fd), refusal)
			}
			nc.Close()
			return c
		}
	}
	s.stats.accepted.Add(1)
	s.reg.add(c)
	s.authq.add(c)
	nc.AddCloseCallback(c.onClose)
	return c
}

// onRequest runs on a pool goroutine whenever input is ready.
func (s *Server[T]) onRequest(ctx context.Context, nc netpoll.Connection) error {
	c := ctx.(*Conn[T])
	in := tally{now: s.clock.now()} // added to the shared counters once per turn, not per frame
	c.lastRead.Store(in.now)
	r := nc.Reader()
	var plain *[]byte // decrypted records, borrowed for this turn only
	defer func() {
		c.endTurn() // also when the turn ends early: what it queued elsewhere goes
		if plain != nil {
			putBuf(plain)
		}
		s.stats.frames.Add(in.frames)
		s.stats.turns.Add(1)
		s.stats.bytesIn.Add(in.bytes)
	}()
	if c.ws != nil {
		s.onWSRequest(c, r, &plain, &in)
		return nil
	}
	if !s.readStream(c, r, &plain, &in) {
		return nil
	}
	r.Release()
	c.Flush()
	return nil
}

// input is what the stream readers need of their input: netpoll's Reader
// for a TCP connection, wsStream for a WebSocket one.
type input interface {
	Peek(n int) ([]byte, error)
	Next(n int) ([]byte, error)
	Release() error
	Len() int
}

// readStream reads chatd's byte stream, the preamble, handshake messages,
// records and frames, while r holds input. It reports false when the turn
// must end: the connection is closing, or (wsStream only) the rest of a
// unit has not arrived yet.
func (s *Server[T]) readStream(c *Conn[T], r input, plain **[]byte, in *tally) bool {
	for r.Len() > 0 {
		if c.isClosed() {
			// Closing (shutdown, kick, a refused frame): the rest of the
			// input has no one to answer it. Handling it would keep the
			// close callback waiting for this turn to end.
			r.Release()
			return false
		}
		if c.state.Load()&statePreamble == 0 {
			if !s.readPreamble(c, r) {
				return false
			}
			continue
		}
		if c.sec != nil {
			if *plain == nil {
				*plain = getBuf()
			}
			if !s.readRecord(c, r, *plain, in) {
				return false
			}
			continue
		}
		hdr, err := r.Peek(4)
		if err != nil {
			s.readFailed(c, err)
			return false
		}
		n, err := codec.ParseHeader(hdr, s.cfg.MaxFrame)
		if err != nil {
			s.reject(c, reasonOf(err), codec.CodeOf(err), err.Error())
			return false
		}
		frame, err := r.Next(4 + n)
		if err != nil {
			s.readFailed(c, err)
			return false
		}
		in.bytes += uint64(4 + n)
		if !s.dispatch(c, r, codec.Type(frame[4]), frame[codec.HeaderLen:], in) {
			return false
		}
	}
	return true
}

func (s *Server[T]) readPreamble(c *Conn[T], r input) bool {
	p, err := r.Next(codec.PreambleLen)
	if err != nil {
		s.readFailed(c, err)
		return false
	}
	s.stats.bytesIn.Add(codec.PreambleLen)
	tr, err := codec.ParsePreamble(p)
	if err != nil {
		s.reject(c, reasonOf(err), codec.CodeOf(err), err.Error())
		return false
	}
	switch {
	case tr == codec.TransportPlain && s.cfg.AllowPlaintext:
	case tr == codec.TransportPlain:
		s.reject(c, ReasonPlaintextRefused, codec.CodeEncryption, "this server requires an encrypted transport")
		return false
	case (tr == codec.TransportNoiseXX || tr == codec.TransportNoiseIK) && s.cfg.NoiseKeys != nil:
		hs, err := secure.ServerKeys(tr, s.cfg.NoiseKeys.Keys(), append([]byte(nil), p...))
		if err != nil {
			s.reject(c, ReasonHandshake, codec.CodeHandshakeFailed, err.Error())
			return false
		}
		c.sec = &secureConn{hs: hs}
	default:
		s.reject(c, ReasonTransport, codec.CodeEncryption, fmt.Sprintf("transport %d is not supported", tr))
		return false
	}
	c.setState(statePreamble)
	return true
}

// tally counts one OnRequest turn's input; now is the turn's clock reading.
type tally struct {
	frames, bytes uint64
	now           uint32
}

// dispatch hands one whole frame, read plainly or opened from a record, to
// the handler after the rate check. Types a client may never send are
// refused here, before the handler. It reports false when the connection
// is closing and the turn must end.
func (s *Server[T]) dispatch(c *Conn[T], r input, t codec.Type, body []byte, in *tally) bool {
	in.frames++
	if !s.withinRate(c, codec.HeaderLen+len(body), in.now) {
		return false
	}
	if !t.FromClient() {
		if t.Known() {
			s.reject(c, ReasonWrongDirection, codec.CodeWrongDirection, t.String()+" is a server frame")
		} else {
			s.reject(c, ReasonUnknownType, codec.CodeUnknownType, "unknown frame type "+t.String())
		}
		return false
	}
	if err := s.handler.Frame(c, t, body); err != nil {
		// A handler that refuses a frame as malformed says so by wrapping
		// the codec's error; other errors are ordinary closes (LOGOUT).
		if errors.Is(err, codec.ErrMalformed) || errors.Is(err, codec.ErrUnknownType) {
			s.stats.bad.note(s.log, reasonOf(err), c.RemoteAddr, err.Error())
		}
		r.Release()
		c.Close()
		return false
	}
	return true
}

// withinRate counts a frame against the connection's per-second limits;
// a connection past them gets ERROR 50 and is closed, logged a few times
// only (a flood must not flood the log too).
func (s *Server[T]) withinRate(c *Conn[T], n int, now uint32) bool {
	if s.cfg.MaxFrameRate < 0 && s.cfg.MaxByteRate < 0 {
		return true
	}
	if now-c.rateStart >= 1000 {
		c.rateStart, c.rateFrames, c.rateBytes = now, 0, 0
	}
	c.rateFrames++
	c.rateBytes += uint32(n)
	if (s.cfg.MaxFrameRate < 0 || c.rateFrames <= uint32(s.cfg.MaxFrameRate)) &&
		(s.cfg.MaxByteRate < 0 || c.rateBytes <= uint32(s.cfg.MaxByteRate)) {
		return true
	}
	s.reject(c, ReasonRateLimited, codec.CodeRateLimited, "frame or byte rate limit exceeded")
	return false
}

// reject answers bad input with ERROR and closes the connection (a
// WebSocket one with a close frame after the ERROR: 1009 for a frame over
// the limit, 1008 otherwise).
func (s *Server[T]) reject(c *Conn[T], why Reason, code codec.Code, detail string) {
	s.stats.bad.note(s.log, why, c.RemoteAddr, detail)
	if c.ws != nil {
		if why == ReasonTooLarge {
			c.setWSClose(closeTooBig)
		} else {
			c.setWSClose(closePolicy)
		}
	}
	if buf, ok := c.Begin(); ok {
		c.End(codec.AppendError(buf, code, 0, nil, detail))
	}
	c.nc.Reader().Release()
	c.Close()
}

// readFailed handles a read that did not complete: a peer that went away
// or one that stalled mid-frame past ReadTimeout.
func (s *Server[T]) readFailed(c *Conn[T], err error) {
	if errors.Is(err, errPartial) {
		return // a WebSocket stream waiting for its next frame
	}
	if errors.Is(err, netpoll.ErrReadTimeout) {
		s.stats.bad.note(s.log, ReasonReadTimeout, c.RemoteAddr, "a frame started and not finished in the read timeout")
	}
	c.nc.Reader().Release()
	c.Close()
}

// slowConsumer takes over closing a connection that does not read what it
// is sent: it drops the queue for an ERROR 51 and reports whether the
// caller now owns the close and must call c.finish (outside every lock
// Handler.Closed takes).
func (s *Server[T]) slowConsumer(c *Conn[T], why string) bool {
	if !c.setState(stateClosed) {
		return false
	}
	s.stats.bad.note(s.log, ReasonSlowConsumer, c.RemoteAddr, why)
	c.mu.Lock()
	if c.out == nil {
		c.out = getBuf()
	}
	// Drop what it would not read; whatever mattered is still in its inbox.
	*c.out = codec.AppendError((*c.out)[:0], codec.CodeSlowConsumer, 0, nil, why)
	c.mu.Unlock()
	return true
}

// closeQuiet closes without a last flush: the socket failed.
func (s *Server[T]) closeQuiet(c *Conn[T]) {
	if c.setState(stateClosed) {
		c.nc.Close()
	}
}

func (s *Server[T]) unregister(c *Conn[T]) {
	s.reg.remove(c)
	s.stats.closed.Add(1)
	s.handler.Closed(c)
}
