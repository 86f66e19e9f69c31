package conn

import (
	"encoding/binary"
	"errors"

	"github.com/gobwas/ws"
)

// WebSocket frame headers are parsed and written by hand, straight from
// netpoll's Peek: gobwas/ws reads and writes them through io.Reader and
// io.Writer, which costs an allocation-free but indirect call per byte
// group (about 5 µs per message in the probe, web-clients.md §2.2).

// Opcodes (RFC 6455 §5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// Close status codes (RFC 6455 §7.4.1).
const (
	closeNormal      uint16 = 1000
	closeProtocol    uint16 = 1002
	closeUnsupported uint16 = 1003
	closeNoStatus    uint16 = 1005 // never sent: stands for "no code" in a received close
	closePolicy      uint16 = 1008
	closeTooBig      uint16 = 1009
)

// maxWSPayload is the largest WebSocket frame payload a client may send:
// the largest unit of chatd's byte stream, a Noise record (2 + 65,535
// bytes), which is also above the largest plaintext frame (4 + MaxLen).
// A sender never needs more in one frame, and it is the same bound TCP
// input has: nothing larger is ever buffered for one read.
const maxWSPayload = 2 + 65535

// maxControlPayload is RFC 6455 §5.5's limit on control frames.
const maxControlPayload = 125

// wsHeader is a parsed client frame header.
type wsHeader struct {
	fin    bool
	rsv    byte
	op     byte
	masked bool
	length uint64
	mask   [4]byte
}

// wsHeaderLen returns the length of the header starting with b0, b1 (the
// first two bytes), so the rest can be peeked before it is parsed.
func wsHeaderLen(b1 byte) int {
	n := 2
	switch b1 & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b1&0x80 != 0 {
		n += 4
	}
	return n
}

// parseWSHeader parses a whole header (len(p) == wsHeaderLen(p[1])).
func parseWSHeader(p []byte) wsHeader {
	h := wsHeader{fin: p[0]&0x80 != 0, rsv: p[0] & 0x70, op: p[0] & 0x0f, masked: p[1]&0x80 != 0}
	i := 2
	switch l := p[1] & 0x7f; l {
	case 126:
		h.length, i = uint64(binary.BigEndian.Uint16(p[2:])), 4
	case 127:
		h.length, i = binary.BigEndian.Uint64(p[2:]), 10
	default:
		h.length = uint64(l)
	}
	if h.masked {
		copy(h.mask[:], p[i:])
	}
	return h
}

// errWSFrame is a client frame the server refuses; code is the close
// status it answers with.
type errWSFrame struct {
	code uint16
	msg  string
}

func (e *errWSFrame) Error() string { return "websocket: " + e.msg }

// check applies RFC 6455's rules and chatd's bounds to a header, before
// its payload is waited for. inMessage says whether a fragmented message
// is open (a continuation is expected).
func (h *wsHeader) check(inMessage bool) *errWSFrame {
	switch {
	case h.rsv != 0:
		// No extension is ever negotiated, permessage-deflate included.
		return &errWSFrame{closeProtocol, "reserved bits set"}
	case !h.masked:
		return &errWSFrame{closeProtocol, "unmasked client frame"}
	case h.op >= opClose:
		if h.op > opPong {
			return &errWSFrame{closeProtocol, "reserved opcode"}
		}
		if !h.fin || h.length > maxControlPayload {
			return &errWSFrame{closeProtocol, "fragmented or oversized control frame"}
		}
	case h.op == opText:
		return &errWSFrame{closeUnsupported, "text message: chatd carries binary messages only"}
	case h.op > opBinary:
		return &errWSFrame{closeProtocol, "reserved opcode"}
	case h.op == opContinuation && !inMessage:
		return &errWSFrame{closeProtocol, "continuation without a message"}
	case h.op == opBinary && inMessage:
		return &errWSFrame{closeProtocol, "new message inside a fragmented one"}
	case h.length > maxWSPayload:
		return &errWSFrame{closeTooBig, "frame over the size limit"}
	}
	return nil
}

// appendWSHeader appends an unmasked server frame header (FIN set).
func appendWSHeader(b []byte, op byte, n int) []byte {
	switch {
	case n <= 125:
		return append(b, 0x80|op, byte(n))
	case n <= 0xffff:
		return append(b, 0x80|op, 126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|op, 127)
		return binary.BigEndian.AppendUint64(b, uint64(n))
	}
}

// appendWSClose appends a close frame carrying code.
func appendWSClose(b []byte, code uint16) []byte {
	b = appendWSHeader(b, opClose, 2)
	return binary.BigEndian.AppendUint16(b, code)
}

// unmask removes the client's mask from payload in place (SIMD in gobwas/ws
// v1.5.0 on amd64 and arm64).
func unmask(payload []byte, mask [4]byte) { ws.Cipher(payload, mask, 0) }

// errPartial is what wsStream returns for bytes that have not arrived: the
// rest of the frame or record comes in a later WebSocket frame, and the
// turn ends without closing anything.
var errPartial = errors.New("conn: the rest has not arrived")

// wsStream is a WebSocket connection's input after framing is removed:
// chatd's byte stream, read by the same preamble, record and frame readers
// as a TCP connection's netpoll input. It holds at most one partial chatd
// frame or record plus one WebSocket payload, and no buffer when empty, so
// an idle connection costs nothing here.
type wsStream struct {
	buf *[]byte
	off int
}

func (s *wsStream) Len() int {
	if s.buf == nil {
		return 0
	}
	return len(*s.buf) - s.off
}

func (s *wsStream) Peek(n int) ([]byte, error) {
	if s.Len() < n {
		return nil, errPartial
	}
	return (*s.buf)[s.off : s.off+n], nil
}

func (s *wsStream) Next(n int) ([]byte, error) {
	p, err := s.Peek(n)
	if err == nil {
		s.off += n
	}
	return p, err
}

// Release does nothing: slices returned by Next stay valid until compact,
// which the turn calls once the handler is done with them.
func (s *wsStream) Release() error { return nil }

// appendUnmasked adds a frame's payload to the stream, unmasking it in the
// stream's own buffer (netpoll's input stays read-only).
func (s *wsStream) appendUnmasked(payload []byte, mask [4]byte) {
	if s.buf == nil {
		s.buf = getBuf()
	}
	n := len(*s.buf)
	*s.buf = append(*s.buf, payload...)
	unmask((*s.buf)[n:], mask)
}

// compact drops what was read, returning the buffer to the pool when
// nothing is left.
func (s *wsStream) compact() {
	if s.buf == nil {
		return
	}
	if s.Len() == 0 {
		s.free()
		return
	}
	if s.off > 0 {
		n := copy(*s.buf, (*s.buf)[s.off:])
		*s.buf = (*s.buf)[:n]
		s.off = 0
	}
}

func (s *wsStream) free() {
	if s.buf != nil {
		putBuf(s.buf)
		s.buf, s.off = nil, 0
	}
}
