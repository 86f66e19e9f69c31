// Package codec encodes and decodes chatd's wire protocol, version 1.
//
// PROTOCOL.md at the repository root is the normative description; this
// comment is its summary for readers of the code.
//
// A connection starts with an 8-byte preamble from the client, then carries
// length-prefixed frames in both directions:
//
//	preamble:  | "chatd" (5B) | version (1B) = 0x01 | transport (1B) | reserved (1B) = 0 |
//	frame:     | len (4B, big-endian) | type (1B) | body (len-1 bytes) |
//
// len counts the type byte and the body, so 1 <= len <= MaxLen. Integers are
// big-endian. A str8 is a 1-byte length then that many UTF-8 bytes; a bytes16
// is a 2-byte length then that many bytes. Message ids are 16 raw bytes chosen
// by the sender; session tokens are 32 raw bytes.
//
// # Decoding
//
// Decoders never copy: slices in a decoded frame (names, bodies, id lists)
// alias the input and stay valid only as long as the input does. On the
// server the input is netpoll's read buffer, valid until Release.
// ParseHeader checks len against the limit before the caller buffers the
// body, so an oversized length costs nothing. Malformed input returns an
// error wrapping one of the package's sentinels (ErrMalformed, ErrTooLarge,
// ErrUnknownType) with the frame type and byte offset; it never panics.
//
// # Encoding
//
// Each frame type has a struct with an Append method that appends the whole
// frame (header included) to a byte slice and returns it, in the style of
// strconv.Append*. With a slice of sufficient capacity nothing is allocated.
// Append trusts its input: callers check names and sizes with the Validate
// helpers first (a str8 longer than 255 bytes is cut at 255).
package codec
