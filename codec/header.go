package codec

import (
	"encoding/binary"
	"fmt"
)

// Protocol limits of version 1. A server may enforce lower ones; it announces
// its message body limit in WELCOME.
const (
	// HeaderLen is the size of a frame's length prefix plus its type byte.
	HeaderLen = 5
	// MaxLen is the largest value of a frame's len field (type + body). It is
	// chosen so that a whole frame, 4+MaxLen bytes, fits in one encrypted
	// transport record of 65,535 bytes less the 16-byte authentication tag.
	MaxLen = 65535 - 16 - 4
	// MaxBody is the largest message body in SEND and DELIVER. DELIVER adds
	// 52 bytes of fields around the body, which keeps it under MaxLen.
	MaxBody = 65000
	// MaxIDs is the largest number of message ids in READ and RECEIPT.
	MaxIDs = 255
	// MaxSubscribe is the largest number of users in SUBSCRIBE and UNSUBSCRIBE.
	MaxSubscribe = 255
	// MaxUsers is the largest number of users in a group frame's user list.
	MaxUsers = 4096
)

// Preamble is the fixed part of the 8-byte connection preamble: the magic
// "chatd" and the protocol version. The client follows it with a transport
// byte and a reserved zero byte.
const (
	Magic        = "chatd"
	Version      = 1
	PreambleLen  = 8
	versionIndex = 5
)

// Transport selects what follows the preamble.
type Transport uint8

const (
	// TransportPlain carries frames in the clear. Servers accept it only when
	// configured to, for local benchmarks.
	TransportPlain Transport = 0x00
	// TransportNoiseXX runs a Noise XX handshake, then encrypted records.
	TransportNoiseXX Transport = 0x01
	// TransportNoiseIK runs a Noise IK handshake (the client already knows
	// the server's static key), then encrypted records.
	TransportNoiseIK Transport = 0x02
)

// AppendPreamble appends the 8-byte connection preamble for transport t.
func AppendPreamble(dst []byte, t Transport) []byte {
	return append(dst, 'c', 'h', 'a', 't', 'd', Version, byte(t), 0)
}

// ParsePreamble checks an 8-byte preamble and returns its transport. A wrong
// magic is ErrBadPreamble; a version other than 1 is ErrVersion.
func ParsePreamble(b []byte) (Transport, error) {
	if len(b) < PreambleLen || string(b[:versionIndex]) != Magic {
		return 0, ErrBadPreamble
	}
	if b[versionIndex] != Version {
		return 0, fmt.Errorf("%w: client speaks %d, server speaks %d", ErrVersion, b[versionIndex], Version)
	}
	if b[7] != 0 {
		return 0, fmt.Errorf("%w: reserved byte is 0x%02x", ErrBadPreamble, b[7])
	}
	return Transport(b[6]), nil
}

// ParseHeader reads the length prefix of the frame at the start of b (at
// least 4 bytes) and returns the number of bytes that follow it: the type
// byte plus the body. It fails with ErrTooLarge when that exceeds max (or
// MaxLen, whichever is lower) and with ErrMalformed when it is zero, before
// the caller reads or buffers any of the frame.
func ParseHeader(b []byte, max int) (int, error) {
	if max <= 0 || max > MaxLen {
		max = MaxLen
	}
	n := binary.BigEndian.Uint32(b)
	if n == 0 {
		return 0, &FrameError{Err: ErrMalformed, Detail: "zero frame length"}
	}
	if n > uint32(max) {
		return 0, &FrameError{Err: ErrTooLarge, Detail: fmt.Sprintf("frame length %d exceeds %d", n, max)}
	}
	return int(n), nil
}

// Split returns the first whole frame in b, its type and body, and the rest
// of b. ok is false when b does not yet hold a whole frame (more input is
// needed). Errors are those of ParseHeader.
func Split(b []byte, max int) (t Type, body, rest []byte, ok bool, err error) {
	if len(b) < 4 {
		return 0, nil, b, false, nil
	}
	n, err := ParseHeader(b, max)
	if err != nil {
		return 0, nil, b, false, err
	}
	if len(b) < 4+n {
		return 0, nil, b, false, nil
	}
	return Type(b[4]), b[HeaderLen : 4+n], b[4+n:], true, nil
}
