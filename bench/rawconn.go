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

	// Owned by the reader.
	buf   []byte
	plain []byte // opened record, frames not yet returned
	pos   int
}

func dialRaw(ctx context.Context, addr string, i int, auth codec.Frame, noise bool) (*rawConn, error) {
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%253))}}
	nc, err := d.DialContext(ctx, "tcp", addr)
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

func (c *rawConn) close() { c.nc.Close() }
