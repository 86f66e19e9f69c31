package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/secure"
)

// Options configure a Client.
type Options struct {
	// Addr is the server's TCP host:port, or a ws:// (wss://) URL for the
	// WebSocket binding, e.g. ws://127.0.0.1:7421/chatd.
	Addr string
	// Name and Password log in; with Register set the first connection
	// creates the account instead. Token, if set, is tried first.
	Name, Password string
	Register       bool
	Token          codec.Token
	// ServerKey pins the server's static Noise key (32 bytes); nil accepts
	// the key the server presents (trust on first use: read it back with
	// Client.ServerKey and pin it next time).
	ServerKey []byte
	// OnServerKey, if set, is told when the Client moves its pin to the
	// key the server announced (KEY_ROTATE, signed by the pinned key; see
	// PROTOCOL.md section 8), with the time from which it pins it: the
	// application stores the new key and pins it in later runs, with no
	// one comparing keys again. It runs on the Client's goroutine and must
	// not block. The KEY_ROTATE also arrives on Events.
	OnServerKey func(old, new []byte, from time.Time)
	// Plaintext connects without encryption (servers allow it only with
	// --plaintext, for local benchmarks and tests).
	Plaintext bool
	// Backoff paces reconnects; zero means DefaultBackoff.
	Backoff Backoff
	// Seen bounds the delivery dedup memory (ids). Default 65536.
	Seen int
	// SendWindow bounds the messages written on the connection and not
	// yet answered (SENT, or an ERROR with the message's id); the others
	// wait in the outbox, in send order, and go as answers make room.
	// Default DefaultSendWindow.
	SendWindow int
	// Store, if set, is called with each inbox entry (DELIVER, RECEIPT,
	// GROUP_EVENT) before it is handed to Events, and the entry is
	// acknowledged to the server (which then deletes it) only after Store
	// returns nil: an application that writes entries to its own storage
	// there never loses one to a crash. If Store fails, the Client
	// drops the connection without acknowledging, reports the error
	// through OnStatus and reconnects with backoff; the server sends the
	// entry again. A DELIVER reaches Store once per Client unless it
	// failed; after a restart the server may send again what was stored
	// but not yet acknowledged, so Store must be idempotent (keyed by
	// message id). It runs on the Client's reading goroutine: keep it short.
	Store func(codec.Frame) error
	// OnStatus, if set, is told each change of connection state (see
	// Status). It runs on the Client's goroutine and must not block.
	OnStatus func(Status)
	// OnKeys, if set, is called with the prekey directory's pushes instead
	// of passing them to Events: KEYS_LOW (upload more one-time prekeys,
	// DeviceKeys.Uploads) and IDENTITY_CHANGED (a peer's device has a new
	// identity key: rebuild the session, show the safety number change).
	// It runs on the Client's goroutine and must not block: start the
	// upload on another goroutine.
	OnKeys func(codec.Frame)
	// SentDelivered asks the server, on every connection, for
	// SENT_DELIVERED (PROTOCOL.md section 3): a message its recipient
	// acknowledged live then ends with a *codec.SentDelivered on Events,
	// its SENT and delivered tick in one, and no delivered RECEIPT follows
	// for it. Other messages end with SENT as before. It saves the server
	// and the client a frame and an ACK per message. A server that does
	// not know OPTIONS closes the connection; the Client then reconnects
	// and does not ask again.
	SentDelivered bool
}

// DefaultSendWindow is Options.SendWindow's default: far more than a
// person has unanswered, and few enough that a Client that reconnects
// with thousands of messages waiting resends them a window at a time.
// Resending them all at once, after every reconnect, kept a loaded
// cluster from ever catching up (seen in a kill -9 run under load): each
// resend burst queued at the recipients' homes behind the last, its
// stores were answered after the sender's node gave up waiting (5 s),
// which closed the connection, and the client sent the whole burst again.
const DefaultSendWindow = 256

// stableConn is how long a connection must have lasted for its end to
// start the reconnect backoff over.
const stableConn = 5 * time.Second

// storeError is Options.Store failing: the connection is dropped without
// acknowledging, and reconnected with backoff.
type storeError struct{ err error }

func (e *storeError) Error() string { return "client: store: " + e.err.Error() }
func (e *storeError) Unwrap() error { return e.err }

// ErrKicked ends a Client the server kicked for good: its user logged in
// elsewhere, logged out, changed the password or revoked the session (the
// wrapped reason says which).
var ErrKicked = errors.New("client: session ended by the server")

// Client is a connection that survives disconnects: it reconnects with
// backoff and jitter, resumes with its token, resends unacknowledged
// messages with the DUP flag, and hands each inbox entry to the
// application once. Entries are acknowledged to the server once they have
// been handed to Events, cumulatively: one ACK per batch (see ack.go).
// Events is a buffer, so an application that must not lose an entry to a
// crash stores it in Options.Store, which runs before the acknowledgement.
//
// Each sent message ends with exactly one outcome on Events: SENT (or
// SENT_DELIVERED, Options.SentDelivered), or an
// ERROR carrying its id that refuses it for good. An ERROR that leaves the
// outcome open (busy, storage full, internal error, outcome unknown) is
// not passed on: the message is resent with DUP, with backoff, until one
// of the two arrives, so SENT matches what the recipient sees.
type Client struct {
	opts   Options
	events chan codec.Frame
	done   chan struct{}
	cancel context.CancelFunc

	// wmu orders the writes of SENDs, new and resent: a connection gets
	// them in send order, so that a new message never overtakes the
	// resends a reconnect makes (the server stores in arrival order).
	// Taken before mu.
	wmu sync.Mutex

	mu     sync.Mutex
	conn   *Conn
	user   uint64
	token  codec.Token
	outbox map[codec.MsgID]*pending
	order  []codec.MsgID // outbox in send order, for resends
	seen   map[codec.MsgID]struct{}
	seenQ  []codec.MsgID
	err    error
	// unsent is where in order the messages not yet written on this
	// connection begin; unanswered counts those written on it that wait
	// for their answer (at most opts.SendWindow, but for resends after
	// errors, which were counted when first written).
	unsent, unanswered int
	// next is a server key announced for later (rotate.go), pinned from
	// nextFrom on.
	next     []byte
	nextFrom time.Time
	// noOptions: the server closed a connection for the OPTIONS this
	// Client sent (ERROR 3, an older server): later ones go without.
	noOptions bool
}

type pending struct {
	to      uint64
	flags   codec.SendFlags
	body    []byte
	sent    bool      // written on some connection: later writes carry DUP
	backoff Backoff   // paces resends after errors that leave the outcome open
	due     time.Time // when to resend; zero unless one is scheduled
}

// retryable reports whether an ERROR about a SEND leaves the message's
// outcome open, so that resending it with DUP is both safe and needed.
func retryable(code codec.Code) bool {
	switch code {
	case codec.CodeBusy, codec.CodeStorageFull, codec.CodeInternal, codec.CodeUnknownOutcome, codec.CodeUnavailable:
		return true
	}
	return false
}

// Connect dials and authenticates, retrying with backoff until ctx ends or
// authentication is refused, then keeps the connection up until Close.
func Connect(ctx context.Context, opts Options) (*Client, error) {
	if opts.Backoff.Max == 0 {
		opts.Backoff = DefaultBackoff()
	}
	if opts.Seen == 0 {
		opts.Seen = 65536
	}
	if opts.SendWindow <= 0 {
		opts.SendWindow = DefaultSendWindow
	}
	runCtx, cancel := context.WithCancel(context.Background())
	c := &Client{
		opts: opts, events: make(chan codec.Frame, 1024), done: make(chan struct{}), cancel: cancel,
		outbox: make(map[codec.MsgID]*pending), seen: make(map[codec.MsgID]struct{}), token: opts.Token,
	}
	conn, err := c.connect(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	go c.run(runCtx, conn)
	return c, nil
}

// User returns the authenticated user's id.
func (c *Client) User() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.user
}

// ServerKey returns the server's static key this Client trusts (nil over
// plaintext).
func (c *Client) ServerKey() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.opts.ServerKey
}

// Token returns the current session token (to resume in a later process).
func (c *Client) Token() codec.Token {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.token
}

// Events delivers DELIVER, RECEIPT, GROUP_EVENT (each once), each sent
// message's outcome (SENT, or an ERROR with its id that refuses it for
// good; once), other ERRORs, PRESENCE, IS_TYPING, GOAWAY and verified
// KEY_ROTATE frames (the Client has moved its pin by then), and KEYS_LOW
// and IDENTITY_CHANGED unless Options.OnKeys takes them. It
// closes when the Client ends.
func (c *Client) Events() <-chan codec.Frame { return c.events }

// Err says why the Client ended.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close ends the Client.
func (c *Client) Close() error {
	c.cancel()
	c.mu.Lock()
	if c.conn != nil {
		c.conn.Close()
	}
	c.mu.Unlock()
	<-c.done
	return nil
}

// Send queues a message to a user and returns its id. It is resent after a
// reconnect until SENT arrives.
func (c *Client) Send(to uint64, body []byte) (codec.MsgID, error) {
	return c.send(to, 0, body)
}

// SendGroup queues a message to a group.
func (c *Client) SendGroup(group uint64, body []byte) (codec.MsgID, error) {
	return c.send(group, codec.FlagGroup, body)
}

// SendID queues a message with an id the application chose (NewID), so
// that it can store the message under that id before it goes out. flags
// may hold FlagGroup, and FlagDup for a message an earlier process sent
// without seeing its SENT (the server then answers SENT without storing it
// twice).
func (c *Client) SendID(id codec.MsgID, flags codec.SendFlags, to uint64, body []byte) error {
	c.sendID(id, to, flags, body)
	return nil
}

func (c *Client) send(to uint64, flags codec.SendFlags, body []byte) (codec.MsgID, error) {
	id := NewID()
	c.sendID(id, to, flags, body)
	return id, nil
}

func (c *Client) sendID(id codec.MsgID, to uint64, flags codec.SendFlags, body []byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	c.outbox[id] = &pending{to: to, flags: flags, body: append([]byte(nil), body...), backoff: c.opts.Backoff}
	c.order = append(c.order, id)
	conn := c.conn
	var out []outgoing
	if conn != nil {
		out = c.nextLocked()
	}
	c.mu.Unlock()
	write(conn, out)
}

// outgoing is a SEND to write.
type outgoing struct {
	id    codec.MsgID
	flags codec.SendFlags
	to    uint64
	body  []byte
}

// nextLocked takes, in send order, the messages not yet written on this
// connection that fit in the window. c.mu must be held, and c.wmu until
// they are written.
func (c *Client) nextLocked() []outgoing {
	var out []outgoing
	for c.unsent < len(c.order) && c.unanswered < c.opts.SendWindow {
		id := c.order[c.unsent]
		c.unsent++
		p := c.outbox[id]
		if p == nil {
			continue
		}
		flags := p.flags
		if p.sent {
			flags |= codec.FlagDup // it may be stored already: the server answers SENT, once stored
		}
		p.sent, p.due = true, time.Time{}
		c.unanswered++
		out = append(out, outgoing{id, flags, p.to, p.body})
	}
	return out
}

// write writes out on conn, flushing after the last. A failure ends the
// connection; its messages are written again on the next.
func write(conn *Conn, out []outgoing) {
	for i, o := range out {
		conn.SendID(o.id, o.flags, o.to, o.body, i == len(out)-1)
	}
}

// answered counts an answer to a message written on conn, and writes the
// messages waiting for the room it made.
func (c *Client) answered(conn *Conn) {
	c.mu.Lock()
	c.unanswered = max(0, c.unanswered-1)
	c.mu.Unlock()
	c.writeMore(conn)
}

// writeMore writes the messages that fit in the window now.
func (c *Client) writeMore(conn *Conn) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	var out []outgoing
	if c.conn == conn {
		out = c.nextLocked()
	}
	c.mu.Unlock()
	write(conn, out)
}

// Conn returns the current connection (nil while reconnecting), for
// requests such as LookupName.
func (c *Client) Conn() *Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn
}

// Pending returns how many sent messages still wait for SENT.
func (c *Client) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.outbox)
}

// connect dials and authenticates once per attempt, with backoff between.
func (c *Client) connect(ctx context.Context) (*Conn, error) {
	b := c.opts.Backoff
	for attempt := 1; ; attempt++ {
		c.status(Status{State: StateConnecting, Attempt: attempt})
		conn, err := c.attempt(ctx)
		if err == nil {
			c.status(Status{State: StateConnected})
			return conn, nil
		}
		if errors.Is(err, secure.ErrPinned) {
			return nil, err // a different server answers: never retry into it
		}
		var e *codec.Error
		// A slow-consumer close during login is the server failing to
		// deliver a backlog, not a refusal: try again.
		if errors.As(err, &e) && e.Code != codec.CodeBusy && e.Code != codec.CodeInternal && e.Code != codec.CodeUnavailable &&
			e.Code != codec.CodeShuttingDown && e.Code != codec.CodeTooManyLogins && e.Code != codec.CodeSlowConsumer {
			return nil, err // refused for good: wrong password, unknown user...
		}
		wait := b.Next()
		var g *GoawayError
		busy := errors.As(err, &g)
		if busy {
			wait = b.AtLeast(g.RetryAfter)
		}
		if errors.As(err, &e) && (e.Code == codec.CodeBusy || e.Code == codec.CodeTooManyLogins || e.Code == codec.CodeShuttingDown) {
			busy = true
		}
		c.status(Status{State: StateWaiting, Wait: wait, Busy: busy, Err: err})
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("client: connect: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(wait):
		}
	}
}

func (c *Client) attempt(ctx context.Context) (*Conn, error) {
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	tr := codec.TransportNoiseXX
	if c.opts.Plaintext {
		tr = codec.TransportPlain
	}
	c.mu.Lock()
	pin := c.pin(time.Now())
	c.mu.Unlock()
	conn, err := DialTransport(actx, c.opts.Addr, tr, pin)
	if err != nil {
		return nil, err
	}
	if !c.opts.Plaintext && pin == nil {
		// Trust on first use: later reconnects of this Client pin this key.
		c.mu.Lock()
		c.opts.ServerKey = conn.ServerKey()
		c.mu.Unlock()
	}
	c.mu.Lock()
	tok := c.token
	c.mu.Unlock()
	var w codec.Welcome
	switch {
	case tok != (codec.Token{}):
		w, err = conn.Resume(actx, tok)
		var e *codec.Error
		if errors.As(err, &e) && e.Code == codec.CodeInvalidToken && c.opts.Password != "" {
			w, err = conn.Login(actx, c.opts.Name, c.opts.Password)
		}
	case c.opts.Register:
		w, err = conn.Register(actx, c.opts.Name, c.opts.Password)
		var e *codec.Error
		if errors.As(err, &e) && e.Code == codec.CodeNameTaken {
			// Registering again as oneself logs in; with another password
			// the name is someone else's: say so, not "wrong password".
			taken := err
			w, err = conn.Login(actx, c.opts.Name, c.opts.Password)
			if errors.As(err, &e) && e.Code == codec.CodeWrongPassword {
				err = taken
			}
		}
	default:
		w, err = conn.Login(actx, c.opts.Name, c.opts.Password)
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	c.wmu.Lock() // new SENDs wait until the resends are written
	defer c.wmu.Unlock()
	c.mu.Lock()
	c.user, c.token, c.conn = w.User, w.Token, conn
	// Messages that never got SENT go again, in order, a window at a
	// time; those written before are flagged as resends.
	for _, p := range c.outbox {
		p.due = time.Time{} // the resend in order replaces a scheduled one
	}
	c.unsent, c.unanswered = 0, 0
	out := c.nextLocked()
	ask := c.opts.SentDelivered && !c.noOptions
	c.mu.Unlock()
	if ask {
		conn.askOptions(codec.OptionSentDelivered) // before the resends: they are covered
	}
	write(conn, out)
	conn.Flush()
	return conn, nil
}

func (c *Client) run(ctx context.Context, conn *Conn) {
	defer close(c.done)
	defer close(c.events)
	b := c.opts.Backoff
	for {
		up := time.Now()
		goaway, err := c.pump(ctx, conn)
		c.mu.Lock()
		c.conn = nil
		c.mu.Unlock()
		conn.Close()
		var st Status
		var se *storeError
		switch {
		case errors.As(err, &se) && ctx.Err() == nil:
			// The application could not store an entry: the server keeps
			// it, unacknowledged, and sends it again on the next connection.
			st = Status{State: StateWaiting, Wait: b.Next(), Err: err}
		case err != nil || ctx.Err() != nil:
			c.mu.Lock()
			c.err = err
			if c.err == nil {
				c.err = ctx.Err()
			}
			c.mu.Unlock()
			return
		case goaway != nil:
			b.Reset()
			st = Status{State: StateWaiting, Wait: b.AtLeast(goaway.RetryAfter), Busy: true, Err: goaway}
		default:
			// Only a connection that lasted starts the backoff over. One
			// the server closes right after the login (a message's
			// recipient's home is down, so each resend is refused for now
			// and the connection closed) is paced like a failed attempt:
			// reconnecting at once, again and again, was a storm of logins
			// on a cluster that was restarting a node.
			if time.Since(up) >= stableConn {
				b.Reset()
			}
			st = Status{State: StateWaiting, Wait: b.Next(), Err: conn.Err()}
			if st.Err == nil {
				st.Err = errors.New("client: connection ended")
			}
		}
		wait := st.Wait
		c.status(st)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if conn, err = c.connect(ctx); err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		}
	}
}

// pump forwards one connection's events until it ends. It returns the
// server's GOAWAY (nil if none), or an error that ends the Client.
func (c *Client) pump(ctx context.Context, conn *Conn) (*GoawayError, error) {
	var goaway *GoawayError
	a := newAcker(conn)
	defer a.stop()
	resend := time.NewTimer(time.Hour)
	resend.Stop()
	defer resend.Stop()
	c.scheduleResend(resend) // resends due from the last connection
	for {
		var f codec.Frame
		var ok bool
		select {
		case f, ok = <-conn.Events():
		case <-a.timer.C:
			a.send()
			continue
		case <-resend.C:
			c.resendDue(conn, resend)
			continue
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if !ok {
			return goaway, nil
		}
		idle := len(conn.Events()) == 0
		seq, size := entrySeq(f)
		switch f := f.(type) {
		case *codec.Sent:
			if !c.sent(conn, f.ID) {
				continue // SENT again for a resend: the application has its outcome
			}
		case *codec.SentDelivered:
			if !c.sent(conn, f.ID) {
				continue
			}
		case *codec.Error:
			if f.Code == codec.CodeUnknownType && c.opts.SentDelivered {
				c.mu.Lock()
				c.noOptions = true // the only type this Client sends that a server may not know
				c.mu.Unlock()
			}
			if f.ID != (codec.MsgID{}) && retryable(f.Code) {
				if c.retryLater(f.ID) {
					c.answered(conn) // its resend counts again
					c.scheduleResend(resend)
				}
				continue // not an outcome: resent with DUP (or the outcome is known)
			}
			if f.ID != (codec.MsgID{}) {
				c.mu.Lock()
				_, waiting := c.outbox[f.ID]
				delete(c.outbox, f.ID) // refused for good: the app sees the ERROR
				c.trimOrder()
				c.mu.Unlock()
				if waiting {
					c.answered(conn)
				}
			}
		case *codec.Deliver:
			if c.seenBefore(f.ID) {
				a.add(seq, size, idle, true) // a message: its sender waits for the tick
				continue
			}
		case *codec.Goaway:
			goaway = &GoawayError{RetryAfter: time.Duration(f.RetryAfter) * time.Millisecond, Reason: f.Reason}
		case *codec.Kicked:
			// Only an idle kick is worth a reconnect: after a revoked
			// session (6) a password login would undo the revocation.
			if f.Reason != codec.KickIdle && f.Reason != codec.KickSlowConsumer {
				return nil, fmt.Errorf("%w (%v)", ErrKicked, f.Reason)
			}
		case *codec.Pong:
			continue
		case *codec.KeysLow, *codec.IdentityChanged:
			if c.opts.OnKeys != nil {
				c.opts.OnKeys(f)
				continue
			}
		case *codec.KeyRotate:
			if !c.rotate(conn, f) {
				continue // not signed by the key this connection was made with
			}
		}
		if seq != 0 && c.opts.Store != nil {
			if err := c.opts.Store(f); err != nil {
				a.send() // what was stored before it is safe to delete
				return nil, &storeError{err}
			}
		}
		if d, ok := f.(*codec.Deliver); ok {
			c.remember(d.ID) // only once stored: a failed Store must see it again
		}
		if err := c.hand(ctx, f, a); err != nil {
			return nil, err
		}
		if seq != 0 {
			_, receipt := f.(*codec.Receipt)
			a.add(seq, size, idle, !receipt) // acknowledged only once the application has it
		}
	}
}

// sent settles message id, answered on conn (SENT or SENT_DELIVERED), and
// reports whether it was waiting: a second answer (for a resend) is not.
func (c *Client) sent(conn *Conn, id codec.MsgID) (waiting bool) {
	c.mu.Lock()
	_, waiting = c.outbox[id]
	delete(c.outbox, id)
	c.trimOrder()
	more := false
	if waiting {
		c.unanswered = max(0, c.unanswered-1)
		more = c.conn == conn && c.unsent < len(c.order)
	}
	c.mu.Unlock()
	if more { // only then the writers' lock: the reader never waits on a flush for nothing
		c.writeMore(conn)
	}
	return waiting
}

// hand passes f to the application. While the application is behind, the
// entries it already took are still acknowledged on time.
func (c *Client) hand(ctx context.Context, f codec.Frame, a *acker) error {
	select {
	case c.events <- f:
		return nil
	default:
	}
	a.maybe(true)
	for {
		select {
		case c.events <- f:
			return nil
		case <-a.timer.C:
			a.send()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// retryLater schedules a resend of id after its backoff and reports
// whether id is a message still waiting for its outcome.
func (c *Client) retryLater(id codec.MsgID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.outbox[id]
	if p == nil {
		return false
	}
	p.due = time.Now().Add(p.backoff.Next())
	return true
}

// scheduleResend sets t to fire at the earliest scheduled resend.
func (c *Client) scheduleResend(t *time.Timer) {
	c.mu.Lock()
	var first time.Time
	for _, p := range c.outbox {
		if !p.due.IsZero() && (first.IsZero() || p.due.Before(first)) {
			first = p.due
		}
	}
	c.mu.Unlock()
	if !first.IsZero() {
		t.Reset(time.Until(first))
	}
}

// recipient names a message's recipient: a user, or a group, whose ids
// may be equal.
type recipient struct {
	to    uint64
	group bool
}

// resendDue resends, flagged DUP, the messages whose resend is due, in
// send order, and schedules the next. Per recipient, refused messages go
// again in the order they were first sent: the server refuses a later
// one until the first refused comes again (PROTOCOL.md, "Sending"). So a
// message whose resend is due waits for an earlier refused one to the
// same recipient that is not yet due (each has its own jittered
// backoff), and follows at once one that goes now.
func (c *Client) resendDue(conn *Conn, t *time.Timer) {
	now := time.Now()
	var due []outgoing
	var gate map[recipient]time.Time // zero: an earlier one goes now
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	for _, id := range c.order[:c.unsent] { // only those written on this connection are scheduled
		p := c.outbox[id]
		if p == nil || p.due.IsZero() {
			continue
		}
		k := recipient{p.to, p.flags&codec.FlagGroup != 0}
		g, behind := gate[k]
		switch {
		case behind && g.IsZero(): // follows an earlier one going now
		case behind: // waits for an earlier one
			p.due = later(p.due, g)
			continue
		case now.Before(p.due):
			if gate == nil {
				gate = map[recipient]time.Time{}
			}
			gate[k] = p.due
			continue
		default:
			if gate == nil {
				gate = map[recipient]time.Time{}
			}
			gate[k] = time.Time{}
		}
		p.due = time.Time{}
		due = append(due, outgoing{id, p.flags | codec.FlagDup, p.to, p.body})
	}
	c.unanswered += len(due)
	c.mu.Unlock()
	write(conn, due)
	c.scheduleResend(t)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// seenBefore reports whether id was handed on before.
func (c *Client) seenBefore(id codec.MsgID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.seen[id]
	return ok
}

// remember records that id was handed on.
func (c *Client) remember(id codec.MsgID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.seen[id]; ok {
		return
	}
	c.seen[id] = struct{}{}
	c.seenQ = append(c.seenQ, id)
	if len(c.seenQ) > c.opts.Seen {
		delete(c.seen, c.seenQ[0])
		c.seenQ = c.seenQ[1:]
	}
}

// trimOrder drops acknowledged ids from the front of the resend order.
// c.mu must be held.
func (c *Client) trimOrder() {
	i := 0
	for i < len(c.order) {
		if _, ok := c.outbox[c.order[i]]; ok {
			break
		}
		i++
	}
	c.order = c.order[i:]
	c.unsent = max(0, c.unsent-i)
	if len(c.outbox) == 0 {
		c.order = c.order[:0]
		c.unsent = 0
	}
}
