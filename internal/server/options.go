package server

import "github.com/chatd/chatd/codec"

// options handles OPTIONS: the connection's options, for the SENDs it
// sends after them. A bit this server does not know is refused with
// ERROR 33 and nothing changes, which tells a client what is not served.
func (s *Server) options(c *Conn, body []byte) error {
	var f codec.Options
	if err := f.Decode(body); err != nil {
		return s.malformed(c, err)
	}
	if !f.Flags.Valid() {
		s.errorTo(c, codec.CodeInvalidFlags, f.Req, nil, "OPTIONS: unknown option bits set")
		return nil
	}
	c.State.sentDelivered = f.Flags&codec.OptionSentDelivered != 0
	if buf, ok := c.Begin(); ok {
		c.End((&codec.OK{Req: f.Req}).Append(buf)) // flushed as the turn ends, as PONG
	}
	return nil
}
