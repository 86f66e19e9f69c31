package conn

import (
	"encoding/binary"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/secure"
	"github.com/cloudwego/netpoll"
)

// secureConn is an encrypted connection's transport state: the handshake
// while it runs, then the session (about 300 bytes of cipher state).
type secureConn struct {
	hs   *secure.Handshake // until the handshake completes (OnRequest only)
	sess *secure.Session   // set under Conn.mu when it completes
}

// readRecord reads one length-prefixed handshake message or record. A
// handshake that fails, and a record that does not open (altered,
// replayed, reordered), close the connection without a word: a peer that
// cannot speak the transport gets nothing. Frames inside a record go to
// the handler like plaintext ones.
func (s *Server[T]) readRecord(c *Conn[T], r netpoll.Reader, plain *[]byte, in *tally) bool {
	hdr, err := r.Peek(2)
	if err != nil {
		s.readFailed(c, err)
		return false
	}
	rec, err := r.Next(2 + int(binary.BigEndian.Uint16(hdr)))
	if err != nil {
		s.readFailed(c, err)
		return false
	}
	in.bytes += uint64(len(rec))
	sc := c.sec
	if sc.sess == nil {
		if err := sc.hs.Read(rec[2:]); err != nil {
			return s.dropSecure(c)
		}
		if sc.hs.Session() == nil { // the responder's turn
			msg, err := sc.hs.Write(nil)
			if err != nil || c.writeRaw(msg) != nil {
				return s.dropSecure(c)
			}
		}
		if sess := sc.hs.Session(); sess != nil {
			c.mu.Lock()
			sc.sess, sc.hs = sess, nil
			c.mu.Unlock()
		}
		return true
	}
	out, err := sc.sess.Open((*plain)[:0], rec[2:])
	if err != nil {
		return s.dropSecure(c)
	}
	*plain = out
	for p := out; len(p) > 0; {
		t, body, rest, ok, err := codec.Split(p, s.cfg.MaxFrame)
		if err != nil || !ok {
			s.protocolError(c, codec.CodeOf(err), "bad frame in record")
			return false
		}
		if !s.dispatch(c, r, t, body, in) {
			return false
		}
		p = rest
	}
	return true
}

func (s *Server[T]) dropSecure(c *Conn[T]) bool {
	s.stats.protocolErrors.Add(1)
	c.nc.Reader().Release()
	s.closeQuiet(c)
	return false
}
