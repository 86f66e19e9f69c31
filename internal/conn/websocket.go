package conn

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/cloudwego/netpoll"
)

// A WebSocket connection is a TCP connection with one more layer at the
// bottom: after the HTTP upgrade, the payloads of its binary frames, in
// order, are chatd's byte stream, exactly what a TCP connection carries
// (preamble, Noise handshake, records or plaintext frames). Message and
// frame boundaries mean nothing; a chatd frame may span WebSocket frames
// and one WebSocket frame may hold several. So the layer is an adapter:
// input frames are unmasked into wsStream, which the same preamble, record
// and frame readers read; every flush of the outbound queue becomes one
// binary frame. Everything above (Noise, codec, the handler) is shared.
//
// It runs on the same netpoll pollers and goroutine pool as TCP, with no
// goroutine per connection: an HTTP head that arrives in pieces is kept in
// a buffer between turns (not waited for), and the auth deadline closes a
// client that never finishes it, as it closes a TCP client that never
// logs in.

// WSConfig configures the WebSocket listener (Server.ListenWS).
type WSConfig struct {
	// Path is the only request path upgraded. Default "/chatd".
	Path string
	// Origins lists the browser origins allowed to connect, as sent in
	// the Origin header ("https://chat.example.com"); "*" allows any. A
	// request without Origin (not a browser) is always allowed. With an
	// empty list, only a page from the host the request was sent to (the
	// Host header) may connect.
	Origins []string
	// Static, if set, answers plain GETs (requests without Upgrade) with
	// files, the browser client's (wsstatic.go).
	Static StaticFunc
}

// Subprotocol is the WebSocket subprotocol a client must ask for.
const Subprotocol = "chatd.v1"

// maxHead bounds the HTTP upgrade request.
const maxHead = 8 << 10

func (c *WSConfig) setDefaults() {
	if c.Path == "" {
		c.Path = "/chatd"
	}
}

// wsConn is a WebSocket connection's state, next to its Conn.
type wsConn struct {
	// Owned by OnRequest.
	head      *[]byte // the HTTP request so far, until the upgrade
	in        wsStream
	inMessage bool // a fragmented message is open
	// partial says the stream holds part of a chatd frame or record, since
	// partialSince (clock ms): it must be completed within ReadTimeout.
	partial      bool
	partialSince uint32

	// Guarded by Conn.mu (written by OnRequest, read by every flush).
	upgraded  bool
	pong      []byte // a pong frame to send (only the latest ping's)
	closeCode uint16 // the close status finish sends; 0 means 1000
	closing   bool   // finish is writing the last bytes: add a close frame
	closeSent bool
}

// pendingLocked reports whether control frames wait to be written.
func (w *wsConn) pendingLocked() bool {
	return len(w.pong) > 0 || (w.closing && w.upgraded && !w.closeSent)
}

// frameLocked turns the queue's bytes (frames or records) into what goes
// on the socket: pending control frames, then one binary frame holding the
// queue, then a close frame if the connection is closing. Before the
// upgrade nothing of chatd's goes out (the client would read it as HTTP).
func (w *wsConn) frameLocked(bp *[]byte) *[]byte {
	if !w.upgraded {
		*bp = (*bp)[:0]
		return bp
	}
	out := getBuf()
	o := append((*out)[:0], w.pong...)
	w.pong = nil
	if len(*bp) > 0 {
		o = appendWSHeader(o, opBinary, len(*bp))
		o = append(o, *bp...)
	}
	if w.closing && !w.closeSent {
		w.closeSent = true
		switch w.closeCode {
		case 0:
			o = appendWSClose(o, closeNormal)
		case closeNoStatus: // echo a close that carried no status
			o = appendWSHeader(o, opClose, 0)
		default:
			o = appendWSClose(o, w.closeCode)
		}
	}
	putBuf(bp)
	*out = o
	return out
}

// free returns the input buffers (close callback: OnRequest has ended).
func (w *wsConn) free() {
	w.in.free()
	if w.head != nil {
		putBuf(w.head)
		w.head = nil
	}
}

// setClose records the close status the connection's close frame will
// carry, unless one is already set.
func (c *Conn[T]) setWSClose(code uint16) {
	c.mu.Lock()
	if c.ws.closeCode == 0 {
		c.ws.closeCode = code
	}
	c.mu.Unlock()
}

// onWSRequest is OnRequest for a WebSocket connection: the upgrade, then
// frames, each data payload appended to the stream and the stream read as
// far as it holds whole units. A WebSocket frame header or payload that
// has begun is waited for, bounded by ReadTimeout, as a TCP frame is.
func (s *Server[T]) onWSRequest(c *Conn[T], r netpoll.Reader, plain **[]byte, in *tally) {
	w := c.ws
	if !w.upgraded && !s.readHead(c, r) {
		return
	}
	// A TCP peer that stalls mid-frame holds a pool goroutine until
	// ReadTimeout; a WebSocket peer's partial unit waits in the stream
	// with none, so the same bound is checked here, on its next input
	// (pings included), and by the keepalive if nothing comes.
	if w.partial && older(in.now, w.partialSince, uint32(s.cfg.ReadTimeout/time.Millisecond)) {
		s.stats.bad.note(s.log, ReasonReadTimeout, c.RemoteAddr, "a frame started and not finished in the read timeout")
		c.setWSClose(closePolicy)
		r.Release()
		c.Close()
		return
	}
	for r.Len() > 0 {
		if c.isClosed() {
			r.Release()
			return
		}
		p, err := r.Peek(2)
		if err != nil {
			s.readFailed(c, err)
			return
		}
		hl := wsHeaderLen(p[1])
		if p, err = r.Peek(hl); err != nil {
			s.readFailed(c, err)
			return
		}
		h := parseWSHeader(p)
		if e := h.check(w.inMessage); e != nil {
			if e.code == closeTooBig { // the TCP bound and error: ERROR 2
				s.reject(c, ReasonTooLarge, codec.CodeTooLarge,
					fmt.Sprintf("websocket frame of %d bytes over the limit of %d", h.length, maxWSPayload))
				return
			}
			s.refuseWS(c, e.code, e.msg)
			return
		}
		f, err := r.Next(hl + int(h.length))
		if err != nil {
			s.readFailed(c, err)
			return
		}
		in.bytes += uint64(hl) // payload bytes are counted as the stream is read
		if h.op >= opClose {
			in.bytes += h.length
			ok := s.wsControl(c, &h, f[hl:], in)
			r.Release()
			if !ok {
				return
			}
			continue
		}
		w.in.appendUnmasked(f[hl:], h.mask)
		w.inMessage = !h.fin
		r.Release()
		if !s.readStream(c, &w.in, plain, in) && c.isClosed() {
			return
		}
		w.in.compact()
		if w.in.Len() == 0 {
			w.partial = false
		} else if !w.partial {
			w.partial, w.partialSince = true, in.now
		}
	}
	r.Release()
	c.Flush()
}

// wsControl handles a ping, pong or close. Control frames count against
// the connection's frame and byte rate like chatd frames, so a ping flood
// meets the same limit (ERROR 50) as a PING flood; and only the latest
// ping of a turn is answered (RFC 6455 §5.5.3 allows it), so the replies
// to a flood are bounded by the turns, not the pings.
func (s *Server[T]) wsControl(c *Conn[T], h *wsHeader, payload []byte, in *tally) bool {
	if !s.withinRate(c, len(payload)+2, in.now) {
		return false
	}
	var buf [maxControlPayload]byte
	p := buf[:copy(buf[:], payload)]
	unmask(p, h.mask)
	switch h.op {
	case opPing:
		pong := appendWSHeader(make([]byte, 0, 2+len(p)), opPong, len(p))
		pong = append(pong, p...)
		c.mu.Lock()
		c.ws.pong = pong
		c.mu.Unlock()
	case opClose:
		code := closeNoStatus
		switch {
		case len(p) == 1:
			s.refuseWS(c, closeProtocol, "close frame with a 1-byte body")
			return false
		case len(p) >= 2:
			code = binary.BigEndian.Uint16(p)
			if !validCloseCode(code) {
				s.refuseWS(c, closeProtocol, fmt.Sprintf("close status %d is not valid", code))
				return false
			}
		}
		// The client is done: echo its status and close, sending what is
		// queued first.
		c.setWSClose(code)
		c.nc.Reader().Release()
		c.Close()
		return false
	}
	return true
}

// refuseWS closes a connection that broke WebSocket's rules: a close frame
// with code, and no chatd ERROR (the fault is below chatd's stream).
func (s *Server[T]) refuseWS(c *Conn[T], code uint16, why string) {
	s.stats.bad.note(s.log, ReasonWSFrame, c.RemoteAddr, why)
	c.setWSClose(code)
	c.nc.Reader().Release()
	c.Close()
}

// validCloseCode reports whether a client may send code (RFC 6455 §7.4 and
// IANA's registry: 1004-1006 and 1015 are never sent, 1016-2999 are
// reserved, 3000-4999 belong to libraries and applications).
func validCloseCode(code uint16) bool {
	switch {
	case code >= 3000 && code <= 4999:
		return true
	case code < 1000 || code > 1014:
		return false
	}
	return code < 1004 || code > 1006
}
