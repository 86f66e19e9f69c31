// Package client is a Go client for chatd's wire protocol (PROTOCOL.md).
//
// Conn is one connection: dial, authenticate, send, receive events and
// acknowledge them. Client wraps it with what a real app needs: it
// reconnects with exponential backoff and random jitter, resumes with the
// session token, resends messages that never got SENT (flagged DUP so the
// server does not store them twice), and drops deliveries it has already
// seen, so every message reaches the application exactly once.
package client

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/secure"
)

// ErrClosed is returned by calls on a closed connection.
var ErrClosed = errors.New("client: connection closed")

// GoawayError is the server refusing a connection for now (at capacity,
// overloaded, restarting): try again after RetryAfter plus jitter.
type GoawayError struct {
	RetryAfter time.Duration
	Reason     codec.GoawayReason
}

func (e *GoawayError) Error() string {
	return fmt.Sprintf("client: server says go away (%v), retry after %v", e.Reason, e.RetryAfter)
}

// Conn is one connection to a chatd server. Its methods are safe for
// concurrent use. Frames from the server arrive on Events in order.
type Conn struct {
	nc net.Conn

	wmu  sync.Mutex
	wbuf []byte          // frames not yet written
	sess *secure.Session // nil on a plaintext connection

	events chan codec.Frame
	done   chan struct{}
	quit   chan struct{} // closed by Close: stop delivering events
	once   sync.Once
	err    error // why the connection ended; read after done closes

	mu      sync.Mutex
	waiters map[uint32]chan codec.Frame // request id -> reply
	authc   chan codec.Frame            // WELCOME or the ERROR answering authentication
	nextReq atomic.Uint32

	Welcome codec.Welcome // set by a successful Register, Login or Resume

	serverKey []byte
}

// Dial connects to addr over the plaintext transport (servers accept it
// only with --plaintext).
func Dial(ctx context.Context, addr string) (*Conn, error) {
	return DialTransport(ctx, addr, codec.TransportPlain, nil)
}

// DialTransport connects with the given transport, to a TCP host:port or
// to a ws:// URL (the WebSocket binding). For Noise XX,
// serverKey (32 bytes) pins the server's static key and nil accepts any
// (ServerKey then tells which it was); Noise IK requires it.
func DialTransport(ctx context.Context, addr string, t codec.Transport, serverKey []byte) (*Conn, error) {
	nc, err := dialStream(ctx, addr) // websocket.go
	if err != nil {
		return nil, err
	}
	c := &Conn{
		nc:      nc,
		events:  make(chan codec.Frame, 1024),
		done:    make(chan struct{}),
		quit:    make(chan struct{}),
		waiters: make(map[uint32]chan codec.Frame),
	}
	br := bufio.NewReaderSize(nc, 64<<10)
	preamble := codec.AppendPreamble(nil, t)
	if t == codec.TransportPlain {
		c.wbuf = preamble
	} else if err := c.handshake(ctx, br, t, serverKey, preamble); err != nil {
		nc.Close()
		return nil, err
	}
	go c.readLoop(br)
	return c, nil
}

// handshake runs the Noise initiator: the preamble and each handshake
// message go out in the clear, then every frame travels in records.
func (c *Conn) handshake(ctx context.Context, br *bufio.Reader, t codec.Transport, serverKey, preamble []byte) error {
	if dl, ok := ctx.Deadline(); ok {
		c.nc.SetDeadline(dl)
		defer c.nc.SetDeadline(time.Time{})
	}
	hs, err := secure.Client(t, serverKey, preamble)
	if err != nil {
		return err
	}
	if err := hs.Initiate(c.nc, &refusalReader{br: br}, preamble); err != nil {
		return err
	}
	c.sess, c.serverKey = hs.Session(), append([]byte(nil), hs.PeerStatic()...)
	return nil
}

// ServerKey is the server's static public key (Noise transports only).
func (c *Conn) ServerKey() []byte { return c.serverKey }

// Events delivers every frame the server sends that is not the answer to a
// request made through this Conn: DELIVER, SENT, RECEIPT, ERROR about a
// SEND, PRESENCE, GROUP_EVENT, IS_TYPING, KICKED, GOAWAY. It is closed when
// the connection ends; Err then says why.
func (c *Conn) Events() <-chan codec.Frame { return c.events }

// Done is closed when the connection has ended.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err returns why the connection ended (nil while it is open).
func (c *Conn) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// Close closes the connection. Events not yet received are dropped.
func (c *Conn) Close() error {
	c.once.Do(func() { close(c.quit) })
	return c.nc.Close()
}

// Register creates an account and logs in.
func (c *Conn) Register(ctx context.Context, name, password string) (codec.Welcome, error) {
	return c.auth(ctx, &codec.Register{Credentials: codec.Credentials{Name: []byte(name), Password: []byte(password)}})
}

// Login logs in with a password.
func (c *Conn) Login(ctx context.Context, name, password string) (codec.Welcome, error) {
	return c.auth(ctx, &codec.Login{Credentials: codec.Credentials{Name: []byte(name), Password: []byte(password)}})
}

// Resume logs in with the token of an earlier WELCOME.
func (c *Conn) Resume(ctx context.Context, tok codec.Token) (codec.Welcome, error) {
	return c.auth(ctx, &codec.Resume{Token: tok})
}

func (c *Conn) auth(ctx context.Context, f codec.Frame) (codec.Welcome, error) {
	ch := make(chan codec.Frame, 1)
	c.mu.Lock()
	c.authc = ch
	c.mu.Unlock()
	if err := c.write(f, true); err != nil {
		return codec.Welcome{}, err
	}
	select {
	case r := <-ch:
		switch r := r.(type) {
		case *codec.Welcome:
			c.Welcome = *r
			return *r, nil
		case *codec.Error:
			return codec.Welcome{}, r
		case *codec.Goaway:
			return codec.Welcome{}, &GoawayError{RetryAfter: time.Duration(r.RetryAfter) * time.Millisecond, Reason: r.Reason}
		}
		return codec.Welcome{}, fmt.Errorf("client: unexpected %v during authentication", r.Type())
	case <-c.done:
		return codec.Welcome{}, c.err
	case <-ctx.Done():
		return codec.Welcome{}, ctx.Err()
	}
}

// NewID returns a fresh message id: a 48-bit millisecond timestamp and 80
// random bits (the UUIDv7 layout), so ids sort by time.
func NewID() codec.MsgID {
	var id codec.MsgID
	binary.BigEndian.PutUint64(id[:8], uint64(time.Now().UnixMilli())<<16)
	rand.Read(id[6:])
	id[6] = 0x70 | id[6]&0x0f // version 7
	id[8] = 0x80 | id[8]&0x3f // variant
	return id
}

// Send sends a message and returns its id. SENT (or ERROR with the id)
// arrives on Events. With flush false the frame waits in the write buffer
// for the next call that flushes, so that bursts go out in few writes.
func (c *Conn) Send(to uint64, body []byte, flush bool) (codec.MsgID, error) {
	id := NewID()
	return id, c.SendID(id, 0, to, body, flush)
}

// SendID sends a message with a chosen id and flags (FlagDup for a resend,
// FlagGroup for a group).
func (c *Conn) SendID(id codec.MsgID, flags codec.SendFlags, to uint64, body []byte, flush bool) error {
	return c.write(&codec.Send{ID: id, Flags: flags, To: to, Body: body}, flush)
}

// Ack acknowledges every inbox entry up to and including seq.
func (c *Conn) Ack(seq uint64, flush bool) error { return c.write(&codec.Ack{Seq: seq}, flush) }

// MarkRead sends a read receipt for messages from user from.
func (c *Conn) MarkRead(from, group uint64, ids ...codec.MsgID) error {
	var l codec.IDList
	for _, id := range ids {
		l = l.AppendID(id)
	}
	return c.write(&codec.Read{To: from, Group: group, IDs: l}, true)
}

// Typing tells an online user that this user is typing (or stopped).
func (c *Conn) Typing(to uint64, typing bool) error {
	st := codec.TypingStopped
	if typing {
		st = codec.TypingStarted
	}
	return c.write(&codec.Typing{To: to, State: st}, true)
}

// Ping sends a PING; the PONG arrives on Events.
func (c *Conn) Ping(nonce uint64) error { return c.write(&codec.Ping{Nonce: nonce}, true) }

// Logout revokes the session's token; the server then closes.
func (c *Conn) Logout() error { return c.write(&codec.Logout{}, true) }

// askOptions writes OPTIONS (unflushed) without waiting: its answer, OK
// or ERROR 33 from a server that does not serve a bit, lands in a waiter
// nobody reads, and the SENDs behind it are covered either way (the
// server handles frames in order).
func (c *Conn) askOptions(flags codec.OptionFlags) error {
	req := c.nextReq.Add(1)
	c.mu.Lock()
	c.waiters[req] = make(chan codec.Frame, 1)
	c.mu.Unlock()
	return c.write(&codec.Options{Req: req, Flags: flags}, false)
}

// SetOptions sets the connection's options (OPTIONS) and waits for the
// server's OK. A server that does not know a bit answers ERROR 33
// (codec.CodeInvalidFlags), and the connection goes on without it.
func (c *Conn) SetOptions(ctx context.Context, flags codec.OptionFlags) error {
	return c.ok(ctx, func(req uint32) codec.Frame { return &codec.Options{Req: req, Flags: flags} })
}

// LookupName returns the id of a user name.
func (c *Conn) LookupName(ctx context.Context, name string) (uint64, error) {
	r, err := c.request(ctx, func(req uint32) codec.Frame { return &codec.Lookup{Req: req, Name: []byte(name)} })
	if err != nil {
		return 0, err
	}
	return r.(*codec.User).User, nil
}

// LookupUser returns the name of a user id.
func (c *Conn) LookupUser(ctx context.Context, user uint64) (string, error) {
	r, err := c.request(ctx, func(req uint32) codec.Frame { return &codec.Lookup{Req: req, User: user} })
	if err != nil {
		return "", err
	}
	return string(r.(*codec.User).Name), nil
}

// request sends a frame carrying a fresh request id and waits for the
// frame that answers it.
func (c *Conn) request(ctx context.Context, build func(req uint32) codec.Frame) (codec.Frame, error) {
	req := c.nextReq.Add(1)
	ch := make(chan codec.Frame, 1)
	c.mu.Lock()
	c.waiters[req] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.waiters, req)
		c.mu.Unlock()
	}()
	if err := c.write(build(req), true); err != nil {
		return nil, err
	}
	select {
	case r := <-ch:
		if e, ok := r.(*codec.Error); ok {
			return nil, e
		}
		return r, nil
	case <-c.done:
		return nil, c.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Flush writes buffered frames.
func (c *Conn) Flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.flushLocked()
}

// flushLocked writes the buffered frames, sealed into records on an
// encrypted connection (records hold whole frames). c.wmu must be held.
func (c *Conn) flushLocked() error {
	if len(c.wbuf) == 0 {
		return nil
	}
	out := c.wbuf
	if c.sess != nil {
		var err error
		if out, err = c.sess.Seal(nil, c.wbuf); err != nil {
			return fmt.Errorf("client: seal: %w", err)
		}
	}
	c.wbuf = c.wbuf[:0]
	if _, err := c.nc.Write(out); err != nil {
		return fmt.Errorf("client: write: %w", err)
	}
	return nil
}

func (c *Conn) write(f codec.Frame, flush bool) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	select {
	case <-c.done:
		return fmt.Errorf("%w: %v", ErrClosed, c.err)
	default:
	}
	c.wbuf = f.Append(c.wbuf)
	if flush || len(c.wbuf) >= 32<<10 {
		return c.flushLocked()
	}
	return nil
}

// WriteRaw writes frames without other buffering (tests use it to send
// bad input). On an encrypted connection they are sealed like any other.
func (c *Conn) WriteRaw(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf = append(c.wbuf, b...)
	return c.flushLocked()
}

func (c *Conn) readLoop(br *bufio.Reader) {
	defer close(c.events)
	defer close(c.done)
	if c.sess != nil {
		c.readRecords(br)
		return
	}
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			c.err = fmt.Errorf("client: connection ended: %w", err)
			return
		}
		n, err := codec.ParseHeader(hdr[:], 0)
		if err != nil {
			c.err = err
			c.nc.Close()
			return
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(br, b); err != nil {
			c.err = fmt.Errorf("client: connection ended: %w", err)
			return
		}
		f, err := codec.DecodeBody(codec.Type(b[0]), b[1:])
		if err != nil {
			c.err = fmt.Errorf("client: bad frame from server: %w", err)
			c.nc.Close()
			return
		}
		c.dispatch(f)
	}
}

// dispatch routes replies to their waiters and everything else to Events.
func (c *Conn) dispatch(f codec.Frame) {
	var req uint32
	switch r := f.(type) {
	case *codec.Welcome, *codec.Goaway:
		if c.authDone(f) {
			return
		}
	case *codec.Error:
		if r.Req == 0 && r.ID == (codec.MsgID{}) && c.authDone(f) {
			return
		}
		req = r.Req
	case *codec.User:
		req = r.Req
	case *codec.OK:
		req = r.Req
	case *codec.GroupInfo:
		req = r.Req
	case *codec.Groups:
		req = r.Req
	case *codec.List:
		req = r.Req
	case *codec.KeysCounts:
		req = r.Req
	case *codec.KeysBundle:
		req = r.Req
	case *codec.PushSubs:
		req = r.Req
	case *codec.SessionList:
		req = r.Req
	}
	if req != 0 {
		c.mu.Lock()
		ch := c.waiters[req]
		c.mu.Unlock()
		if ch != nil {
			ch <- f
			return
		}
	}
	select {
	case c.events <- f:
	case <-c.quit:
	}
}

func (c *Conn) authDone(f codec.Frame) bool {
	c.mu.Lock()
	ch := c.authc
	c.authc = nil
	c.mu.Unlock()
	if ch == nil {
		return false
	}
	ch <- f
	return true
}

// readRecords is readLoop for an encrypted connection: each record opens
// to whole frames.
func (c *Conn) readRecords(br *bufio.Reader) {
	var rec, plain []byte
	for {
		var err error
		if rec, err = secure.ReadRecord(br, rec); err != nil {
			c.err = fmt.Errorf("client: connection ended: %w", err)
			return
		}
		if plain, err = c.sess.Open(plain[:0], rec); err != nil {
			c.err = err
			c.nc.Close()
			return
		}
		for p := plain; len(p) > 0; {
			t, body, rest, ok, err := codec.Split(p, 0)
			if err != nil || !ok {
				c.err = fmt.Errorf("client: bad frame from server: %v", err)
				c.nc.Close()
				return
			}
			// Decoded frames alias body; copy, as plain is reused.
			f, err := codec.DecodeBody(t, append([]byte(nil), body...))
			if err != nil {
				c.err = fmt.Errorf("client: bad frame from server: %w", err)
				c.nc.Close()
				return
			}
			c.dispatch(f)
			p = rest
		}
	}
}
