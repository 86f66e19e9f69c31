package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/chatd/chatd/codec"
)

// rawConn is the bench's own lean client: one buffered reader parsing
// frames in place and one buffered writer, so that the load generator,
// which shares the machine's cores with the server, spends little CPU per
// message. Writes are made by one goroutine at a time (the caller's
// business); reads by one.
type rawConn struct {
	nc  net.Conn
	br  *bufio.Reader
	bw  *bufio.Writer
	buf []byte
	w   codec.Welcome
}

func dialRaw(ctx context.Context, addr string, i int, auth codec.Frame) (*rawConn, error) {
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%253))}}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &rawConn{nc: nc, br: bufio.NewReaderSize(nc, 64<<10), bw: bufio.NewWriterSize(nc, 64<<10)}
	c.bw.Write(auth.Append(codec.AppendPreamble(nil, codec.TransportPlain)))
	if err := c.bw.Flush(); err != nil {
		nc.Close()
		return nil, err
	}
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
	}
	nc.Close()
	return nil, fmt.Errorf("bench: %v during login", t)
}

// next returns the next frame's type and body, valid until the next call.
func (c *rawConn) next() (codec.Type, []byte, error) {
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
func (c *rawConn) buffered() bool { return c.br.Buffered() > 0 }

func (c *rawConn) close() { c.nc.Close() }
