package client

import (
	"bufio"
	"io"
	"time"

	"github.com/chatd/chatd/codec"
)

// refusalReader stands in front of the handshake's first read. A server
// at capacity (or overloaded, or stopping) answers a new connection with a
// plain GOAWAY frame before any handshake, whatever the transport; read as
// a handshake message it is "message is too short", and the client would
// back off as if the server were broken, silently, instead of waiting the
// delay the server asked for. A handshake message never starts like a
// frame header: its u16 length is at least 32 (an ephemeral key), while a
// GOAWAY's u32 length starts with two zero bytes.
type refusalReader struct {
	br      *bufio.Reader
	checked bool
}

func (r *refusalReader) Read(p []byte) (int, error) {
	if !r.checked {
		r.checked = true
		if err := r.refusal(); err != nil {
			return 0, err
		}
	}
	return r.br.Read(p)
}

// refusal reads a plain GOAWAY or ERROR frame if one is next. A server
// refuses with ERROR 78 a client that asks for a key it retired (a key
// rotation's end): the client must not retry, but tell its user to
// verify the server's key again.
func (r *refusalReader) refusal() error {
	hdr, err := r.br.Peek(codec.HeaderLen)
	if err != nil || hdr[0] != 0 || hdr[1] != 0 {
		return nil
	}
	if t := codec.Type(hdr[4]); t == codec.TypeError {
		return r.plainError()
	}
	if g := r.goaway(); g != nil {
		return g
	}
	return nil
}

// plainError reads a plain ERROR frame.
func (r *refusalReader) plainError() error {
	hdr, _ := r.br.Peek(codec.HeaderLen)
	n, err := codec.ParseHeader(hdr, 0)
	if err != nil {
		return nil
	}
	b := make([]byte, 4+n)
	if _, err := io.ReadFull(r.br, b); err != nil {
		return nil
	}
	f, err := codec.DecodeBody(codec.TypeError, b[codec.HeaderLen:])
	if err != nil {
		return nil
	}
	return f.(*codec.Error)
}

// goaway reads a plain GOAWAY frame if one is next.
func (r *refusalReader) goaway() *GoawayError {
	hdr, err := r.br.Peek(codec.HeaderLen)
	if err != nil || hdr[0] != 0 || hdr[1] != 0 || codec.Type(hdr[4]) != codec.TypeGoaway {
		return nil
	}
	n, err := codec.ParseHeader(hdr, 0)
	if err != nil {
		return nil
	}
	b := make([]byte, 4+n) // the u32 length, then type and body
	if _, err := io.ReadFull(r.br, b); err != nil {
		return nil
	}
	f, err := codec.DecodeBody(codec.TypeGoaway, b[codec.HeaderLen:])
	if err != nil {
		return nil
	}
	g := f.(*codec.Goaway)
	return &GoawayError{RetryAfter: time.Duration(g.RetryAfter) * time.Millisecond, Reason: g.Reason}
}
