package conn

import (
	"encoding/binary"
	"errors"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/secure"
)

// secureConn is an encrypted connection's transport state: the handshake
// while it runs, then the session (about 300 bytes of cipher state).
type secureConn struct {
	hs   *secure.Handshake // until the handshake completes (OnRequest only)
	sess *secure.Session   // set under Conn.mu when it completes
	key  []byte            // the server's static public key it used, set with sess
}

// ServerKey is the server's static public key this connection's handshake
// used (nil on plaintext or before the handshake completes): during a key
// rotation, it tells whether the client is still on the old key.
func (c *Conn[T]) ServerKey() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sec == nil {
		return nil
	}
	return c.sec.key
}

// readRecord reads one length-prefixed handshake message or record. A
// handshake that fails, and a record that does not open (altered,
// replayed, reordered), close the connection without a word: a peer that
// cannot speak the transport gets nothing. Frames inside a record go to
// the handler like plaintext ones, and bad ones get the same ERROR,
// sealed: a frame over the limit ERROR 2, a zero length or a record ending
// inside a frame ERROR 1. An empty record carries nothing and is skipped.
func (s *Server[T]) readRecord(c *Conn[T], r input, plain *[]byte, in *tally) bool {
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
			if errors.Is(err, secure.ErrRetired) {
				// Said in the clear, like a refusal before the handshake:
				// a client that pinned a retired key must hear why, and an
				// attacker could only make it stop, which it can anyway.
				s.reject(c, ReasonHandshake, codec.CodeKeyRetired,
					"the server key this client pinned was retired: verify the server's key again and pin the new one")
				return false
			}
			return s.dropSecure(c, ReasonHandshake, err)
		}
		if sc.hs.Session() == nil { // the responder's turn
			msg, err := sc.hs.Write(nil)
			if err == nil {
				err = c.writeRaw(msg)
			}
			if err != nil {
				return s.dropSecure(c, ReasonHandshake, err)
			}
		}
		if sess := sc.hs.Session(); sess != nil {
			c.mu.Lock()
			sc.sess, sc.key, sc.hs = sess, sc.hs.Static(), nil
			c.mu.Unlock()
		}
		return true
	}
	out, err := sc.sess.Decrypt((*plain)[:0], rec[2:])
	if err != nil {
		return s.dropSecure(c, ReasonBadRecord, err)
	}
	*plain = out
	for p := out; len(p) > 0; {
		t, body, rest, ok, err := codec.Split(p, s.cfg.MaxFrame)
		if err != nil {
			s.reject(c, reasonOf(err), codec.CodeOf(err), err.Error())
			return false
		}
		if !ok {
			s.reject(c, ReasonMalformed, codec.CodeMalformed, "a record ends inside a frame")
			return false
		}
		if !s.dispatch(c, r, t, body, in) {
			return false
		}
		p = rest
	}
	return true
}

// dropSecure closes without a word: there is no session to seal an ERROR
// with, or the peer's records cannot be trusted.
func (s *Server[T]) dropSecure(c *Conn[T], why Reason, err error) bool {
	s.stats.bad.note(s.log, why, c.RemoteAddr, err.Error())
	c.nc.Reader().Release()
	s.closeQuiet(c)
	return false
}
