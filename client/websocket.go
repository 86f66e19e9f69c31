package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"

	"github.com/gobwas/ws"
)

// Subprotocol is the WebSocket subprotocol of chatd's WebSocket binding
// (PROTOCOL.md, "WebSocket binding").
const Subprotocol = "chatd.v1"

// IsWebSocketURL reports whether addr names the WebSocket binding
// (ws://host:port/path) rather than a TCP host:port.
func IsWebSocketURL(addr string) bool {
	return strings.HasPrefix(addr, "ws://") || strings.HasPrefix(addr, "wss://")
}

// DialWebSocket opens a WebSocket connection to url (ws://host:port/chatd)
// with chatd's subprotocol and returns it as a net.Conn that reads and
// writes chatd's byte stream: writes become binary frames, reads return
// the payloads of the server's binary frames, pings are answered, and a
// close frame reads as io.EOF. Everything above (preamble, Noise, frames)
// is the same as over TCP; Dial and DialTransport call it for a ws:// or
// wss:// address.
func DialWebSocket(ctx context.Context, url string) (net.Conn, error) {
	return WebSocketDialer{}.Dial(ctx, url)
}

// WebSocketDialer is DialWebSocket with a choice of how the TCP connection
// is made (a source address, say).
type WebSocketDialer struct {
	// NetDial makes the TCP connection; nil means a plain net.Dialer.
	NetDial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Dial is DialWebSocket through d.
func (wd WebSocketDialer) Dial(ctx context.Context, url string) (net.Conn, error) {
	d := ws.Dialer{Protocols: []string{Subprotocol}, NetDial: wd.NetDial}
	nc, br, hs, err := d.Dial(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("client: websocket %s: %w", url, err)
	}
	if hs.Protocol != Subprotocol {
		nc.Close()
		return nil, fmt.Errorf("client: websocket %s: server chose subprotocol %q", url, hs.Protocol)
	}
	c := &wsConn{Conn: nc, r: nc}
	if br != nil { // the server's first frames arrived with the 101
		c.r = io.MultiReader(br, nc)
	}
	return c, nil
}

// wsConn is a WebSocket client connection seen as a byte stream.
type wsConn struct {
	net.Conn
	r    io.Reader
	left int64 // unread payload of the current binary frame
	eof  bool

	wmu sync.Mutex
}

func (c *wsConn) Read(p []byte) (int, error) {
	for c.left == 0 {
		if c.eof {
			return 0, io.EOF
		}
		h, err := ws.ReadHeader(c.r)
		if err != nil {
			return 0, err
		}
		if h.Masked || h.Rsv != 0 {
			return 0, errors.New("client: websocket: masked or extended server frame")
		}
		switch h.OpCode {
		case ws.OpBinary, ws.OpContinuation:
			c.left = h.Length
		case ws.OpPing, ws.OpPong, ws.OpClose:
			payload := make([]byte, h.Length)
			if _, err := io.ReadFull(c.r, payload); err != nil {
				return 0, err
			}
			if h.OpCode == ws.OpPing {
				if err := c.writeFrame(ws.OpPong, payload); err != nil {
					return 0, err
				}
			}
			if h.OpCode == ws.OpClose {
				c.eof = true
				c.writeFrame(ws.OpClose, payload) // echo, as RFC 6455 asks; the server may be gone
			}
		default:
			return 0, fmt.Errorf("client: websocket: unexpected opcode %d", h.OpCode)
		}
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	if err == io.EOF && c.left > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// Write sends p as one masked binary frame.
func (c *wsConn) Write(p []byte) (int, error) {
	if err := c.writeFrame(ws.OpBinary, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsConn) writeFrame(op ws.OpCode, p []byte) error {
	h := ws.Header{Fin: true, OpCode: op, Masked: true, Mask: ws.NewMask(), Length: int64(len(p))}
	out := make([]byte, 0, ws.MaxHeaderSize+len(p))
	buf := bytesWriter{&out}
	if err := ws.WriteHeader(buf, h); err != nil {
		return err
	}
	n := len(out)
	out = append(out, p...)
	ws.Cipher(out[n:], h.Mask, 0)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.Conn.Write(out)
	return err
}

type bytesWriter struct{ b *[]byte }

func (w bytesWriter) Write(p []byte) (int, error) { *w.b = append(*w.b, p...); return len(p), nil }

// dialStream connects to a TCP address or a ws:// URL.
func dialStream(ctx context.Context, addr string) (net.Conn, error) {
	if IsWebSocketURL(addr) {
		return DialWebSocket(ctx, addr)
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("client: dial %s: %w", addr, err)
	}
	return nc, nil
}
