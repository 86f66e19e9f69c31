package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/secure"
)

// rawConn is the bench's own lean client: frames parsed in place from one
// buffered reader, and one locked send path that queues frames and writes
// them (sealed into records on a Noise connection) when asked to flush.
// The load generator shares the machine's cores with the server, so it
// spends little CPU per message.
type rawConn struct {
	nc net.Conn
	br *bufio.Reader
	w  codec.Welcome

	wmu  sync.Mutex
	out  []byte
	sess *secure.Session
	ack  acker // guarded by wmu: the reader adds entries, a timer may send

	// Owned by the reader.
	buf   []byte
	plain []byte // opened record, frames not yet returned
	pos   int
}

func dialRaw(ctx context.Context, addr string, i int, auth codec.Frame, noise bool) (*rawConn, error) {
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%253))}}
	var nc net.Conn
	var err error
	if client.IsWebSocketURL(addr) { // --ws: the same stream in WebSocket frames
		nc, err = client.WebSocketDialer{NetDial: d.DialContext}.Dial(ctx, addr)
	} else {
		nc, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	defer nc.SetDeadline(time.Time{})
	c := &rawConn{nc: nc, br: bufio.NewReaderSize(nc, 64<<10)}
	if noise {
		if err := c.handshake(); err != nil {
			nc.Close()
			return nil, err
		}
	} else {
		c.out = codec.AppendPreamble(nil, codec.TransportPlain)
	}
	c.send(auth, true)
	t, body, err := c.next()
	if err != nil {
		nc.Close()
		return nil, err
	}
	switch t {
	case codec.TypeWelcome:
		c.w.Decode(body)
		c.ack.every = max(1, int(c.w.Window)/2)
		return c, nil
	case codec.TypeError:
		var e codec.Error
		e.Decode(body)
		nc.Close()
		return nil, &e
	case codec.TypeGoaway:
		nc.Close()
		return nil, errGoaway
	}
	nc.Close()
	return nil, fmt.Errorf("bench: %v during login", t)
}

var errGoaway = fmt.Errorf("bench: goaway")

func (c *rawConn) handshake() error {
	pre := codec.AppendPreamble(nil, codec.TransportNoiseXX)
	hs, err := secure.Client(codec.TransportNoiseXX, nil, pre)
	if err != nil {
		return err
	}
	if err := hs.Initiate(c.nc, c.br, pre); err != nil {
		return err
	}
	c.sess = hs.Session()
	return nil
}

// registerRaw registers user name on connection i, retrying while the
// server's password-hashing queue is full.
func registerRaw(ctx context.Context, addr string, i int, name string, noise bool) (*rawConn, error) {
	reg := &codec.Register{Credentials: codec.Credentials{Name: []byte(name), Password: []byte("bench-password")}}
	c, err := dialRaw(ctx, addr, i, reg, noise)
	for attempt := 0; err != nil && attempt < 100; attempt++ {
		time.Sleep(20 * time.Millisecond)
		c, err = dialRaw(ctx, addr, i, reg, noise)
	}
	return c, err
}

// registerAll opens n connections, each registering user prefix<i>, eight
// at a time. On error the ones opened are closed.
func registerAll(ctx context.Context, addr string, n int, prefix string, noise bool) ([]*rawConn, error) {
	conns := make([]*rawConn, n)
	err := parallel(ctx, n, 8, func(i int) error {
		c, err := registerRaw(ctx, addr, i, fmt.Sprintf("%s%d", prefix, i), noise)
		conns[i] = c
		return err
	})
	if err != nil {
		closeAll(conns)
		return nil, err
	}
	return conns, nil
}

func closeAll(conns []*rawConn) {
	for _, c := range conns {
		if c != nil {
			c.close()
		}
	}
}

// send queues a frame, writing the queue when flush is set or it is large.
// Safe from several goroutines (a sender and its reader's acks).
func (c *rawConn) send(f codec.Frame, flush bool) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.out = f.Append(c.out)
	if !flush && len(c.out) < 16<<10 {
		return nil
	}
	return c.flushLocked()
}

// flush writes whatever is queued.
func (c *rawConn) flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.flushLocked()
}

func (c *rawConn) flushLocked() error {
	if len(c.out) == 0 {
		return nil
	}
	w := c.out
	if c.sess != nil {
		var err error
		if w, err = c.sess.Seal(nil, c.out); err != nil {
			return err
		}
	}
	c.out = c.out[:0]
	_, err := c.nc.Write(w)
	return err
}

// next returns the next frame's type and body, valid until the next call.
func (c *rawConn) next() (codec.Type, []byte, error) {
	if c.sess != nil {
		for c.pos >= len(c.plain) {
			rec, err := secure.ReadRecord(c.br, c.buf)
			if err != nil {
				return 0, nil, err
			}
			c.buf = rec
			if c.plain, err = c.sess.Open(c.plain[:0], rec); err != nil {
				return 0, nil, err
			}
			c.pos = 0
		}
		t, body, rest, ok, err := codec.Split(c.plain[c.pos:], 0)
		if err != nil || !ok {
			return 0, nil, fmt.Errorf("bench: bad frame in record: %v", err)
		}
		c.pos = len(c.plain) - len(rest)
		return t, body, nil
	}
	var hdr [4]byte
	if _, err := io.ReadFull(c.br, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := int(binary.BigEndian.Uint32(hdr[:]))
	if n == 0 || n > codec.MaxLen {
		return 0, nil, fmt.Errorf("bench: bad frame length %d", n)
	}
	if cap(c.buf) < n {
		c.buf = make([]byte, n)
	}
	b := c.buf[:n]
	if _, err := io.ReadFull(c.br, b); err != nil {
		return 0, nil, err
	}
	return codec.Type(b[0]), b[1:], nil
}

// buffered reports whether more input is already waiting, so that acks can
// be batched until the reader catches up.
func (c *rawConn) buffered() bool { return c.br.Buffered() > 0 || c.pos < len(c.plain) }

// close closes the socket first: a writer blocked in Write holds wmu
// until the close fails its write.
func (c *rawConn) close() {
	c.nc.Close()
	c.wmu.Lock()
	c.ack.stop()
	c.wmu.Unlock()
}

// Acknowledgements follow the client package (client/ack.go), so that the
// server sees the ACK traffic of real clients: cumulative, sent when half
// the server's window or ackBytes of entries are unacknowledged, or when
// the read turn ends and ackDelay has passed since the last ACK (else one
// timer, made once per connection, sends it when it has); receipts alone
// wait receiptAckDelay instead.
const (
	ackDelay        = 10 * time.Millisecond
	receiptAckDelay = 250 * time.Millisecond
	ackBytes        = 256 << 10
)

// acker is a connection's acknowledgement state, guarded by its wmu.
type acker struct {
	every   int    // entries: half the server's window
	seq     uint64 // highest entry handled and not acknowledged; 0 when none
	n       int    // entries since the last ACK
	bytes   int    // their approximate frame bytes
	urgent  bool   // a message or event among them (not only receipts)
	last    time.Time
	timer   *time.Timer // made on the first delayed ACK, reused after
	armed   bool
	stopped bool // connection closing: the timer stays off
}

// entry records that the reader handled inbox entry seq (about size
// frame bytes; urgent unless it is a receipt), queueing an ACK when a
// count or byte bound is reached.
func (c *rawConn) entry(seq uint64, size int, urgent bool) {
	c.wmu.Lock()
	a := &c.ack
	a.seq, a.n, a.bytes, a.urgent = seq, a.n+1, a.bytes+size, a.urgent || urgent
	if a.n >= a.every || a.bytes >= ackBytes {
		c.ackLocked()
	}
	c.wmu.Unlock()
}

// endTurn is the reader's end of a turn (no more input buffered): a
// pending ACK goes now if ackDelay has passed, else the timer sends it
// then; whatever is queued is written in one go.
func (c *rawConn) endTurn() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	a := &c.ack
	if a.seq != 0 {
		delay := receiptAckDelay
		if a.urgent {
			delay = ackDelay
		}
		if wait := delay - time.Since(a.last); wait <= 0 {
			c.ackLocked()
		} else if a.armed && a.urgent {
			a.timer.Reset(wait) // a receipt's long wait, cut short by a message
		} else if !a.armed && !a.stopped {
			if a.timer == nil {
				a.timer = time.AfterFunc(wait, c.ackLater)
			} else {
				a.timer.Reset(wait)
			}
			a.armed = true
		}
	}
	return c.flushLocked()
}

// ackLater is the timer's delayed ACK.
func (c *rawConn) ackLater() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.ack.armed = false
	if c.ack.seq != 0 && !c.ack.stopped {
		c.ackLocked()
		c.flushLocked() // a failure ends the connection; its reader sees it
	}
}

// ackLocked queues an ACK for everything handled so far.
func (c *rawConn) ackLocked() {
	a := &c.ack
	if a.armed {
		a.timer.Stop()
		a.armed = false
	}
	ack := codec.Ack{Seq: a.seq}
	c.out = ack.Append(c.out)
	a.seq, a.n, a.bytes, a.urgent, a.last = 0, 0, 0, false, time.Now()
}

func (a *acker) stop() {
	a.stopped = true
	if a.timer != nil {
		a.timer.Stop()
	}
}
