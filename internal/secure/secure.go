// Package secure is chatd's encrypted transport, without I/O: the Noise
// handshake that follows the connection preamble, and the record layer that
// carries frames once it is done. The connection layer feeds it bytes.
//
// Handshake messages and records are both framed as
//
//	| len (u16, big-endian) | Noise message (len bytes) |
//
// The 8 preamble bytes are the Noise prologue, so a peer that changed the
// transport byte on the way fails the handshake. After it, every record
// holds one or more whole frames (a record never splits a frame), at most
// 65,519 bytes of them, sealed with the cipher state of its direction.
// Nonces are implicit counters: a replayed, reordered, dropped or altered
// record fails to open, and the connection must be closed.
package secure

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/chatd/chatd/codec"
	"github.com/flynn/noise"
	"golang.org/x/crypto/curve25519"
)

// Suite is chatd's cipher suite: Noise_*_25519_ChaChaPoly_BLAKE2s.
var Suite = noise.NewCipherSuite(noise.DH25519, noise.CipherChaChaPoly, noise.HashBLAKE2s)

const (
	// MaxMessage is the largest Noise message, and so the largest record body.
	MaxMessage = 65535
	// MaxPlain is the most frame bytes one record carries.
	MaxPlain = MaxMessage - 16
)

// Errors; each ends the connection.
var (
	ErrRecord     = errors.New("secure: record does not open (altered, replayed or out of order)")
	ErrPinned     = errors.New("secure: the server's key is not the pinned one (if its operator rotated keys and retired the one you pinned, verify the new key again)")
	ErrSplitFrame = errors.New("secure: a record ends inside a frame")
	// ErrRetired is a client asking for a server key that was retired: the
	// server refuses it in the clear (ERROR 78) before the handshake.
	ErrRetired = errors.New("secure: the client asks for a retired server key")
)

// Keypair is a Curve25519 key pair.
type Keypair = noise.DHKey

// GenerateKeypair makes a new key pair.
func GenerateKeypair() (Keypair, error) { return noise.DH25519.GenerateKeypair(rand.Reader) }

// LoadOrCreateKey reads the server's static private key from path, or
// makes one and writes it there (mode 0600) on first start.
func LoadOrCreateKey(path string) (k Keypair, created bool, err error) {
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if len(b) != 32 {
			return k, false, fmt.Errorf("secure: %s holds %d bytes, want a 32-byte private key", path, len(b))
		}
		pub, err := curve25519.X25519(b, curve25519.Basepoint)
		if err != nil {
			return k, false, fmt.Errorf("secure: %s: %w", path, err)
		}
		return Keypair{Private: b, Public: pub}, false, nil
	case !errors.Is(err, os.ErrNotExist):
		return k, false, fmt.Errorf("secure: read key: %w", err)
	}
	if k, err = GenerateKeypair(); err != nil {
		return k, false, fmt.Errorf("secure: generate key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return k, false, fmt.Errorf("secure: %w", err)
	}
	if err := WriteKeyFile(path, k.Private); err != nil {
		if errors.Is(err, os.ErrExist) {
			k, _, err := LoadOrCreateKey(path) // another process made it first
			return k, false, err
		}
		return k, false, err
	}
	return k, true, nil
}

// Handshake is one side of a Noise handshake.
type Handshake struct {
	hs        *noise.HandshakeState
	dh        *x25519
	pinned    []byte
	initiator bool
	session   *Session

	// A responder picks its static key when the first message arrives
	// (see Keys and respond); until then hs is nil.
	keys     *Keys
	pattern  noise.HandshakePattern
	prologue []byte
	static   []byte // the responder's static public key, once picked
	hint     []byte // the initiator's first payload: the key it pinned
}

// Server starts the responder of transport t (XX or IK) with the server's
// static key; prologue is the 8-byte preamble as received.
func Server(t codec.Transport, static Keypair, prologue []byte) (*Handshake, error) {
	return ServerKeys(t, &Keys{Current: static}, prologue)
}

// ServerKeys starts the responder of transport t with a server's keys: it
// answers with the one the client asks for (see Read).
func ServerKeys(t codec.Transport, keys *Keys, prologue []byte) (*Handshake, error) {
	p, err := pattern(t)
	if err != nil {
		return nil, err
	}
	return &Handshake{keys: keys, pattern: p, prologue: prologue}, nil
}

// respond reads the client's first message with the static key it asks
// for. With XX the server's key is not used until its reply, so the
// client names it: the first message's payload (cleartext, but mixed into
// the handshake hash, so altering it fails the handshake) is the 32-byte
// key the client has pinned, or empty. A retired key is refused; any
// other gets Next if it names Next, else Current. With IK the client
// already encrypted to the key it holds: each key is tried in turn.
func (h *Handshake) respond(msg []byte) error {
	keys := []Keypair{h.keys.Current}
	if h.pattern.Name == noise.HandshakeXX.Name {
		if len(msg) == 64 && h.keys.IsRetired(msg[32:]) {
			return ErrRetired
		}
		var hint []byte
		if len(msg) == 64 {
			hint = msg[32:]
		}
		keys[0] = h.keys.For(hint)
	} else if h.keys.Next != nil {
		keys = append(keys, *h.keys.Next)
	}
	var err error
	for _, k := range keys {
		var dh *x25519
		if dh, err = staticDH(k); err != nil {
			return err
		}
		hs, nerr := noise.NewHandshakeState(noise.Config{CipherSuite: suiteFor(dh), Pattern: h.pattern, Prologue: h.prologue, StaticKeypair: k})
		if nerr != nil {
			return fmt.Errorf("secure: %w", nerr)
		}
		_, cs1, cs2, rerr := hs.ReadMessage(nil, msg)
		if err = rerr; err != nil {
			continue
		}
		h.hs, h.dh, h.static = hs, dh, k.Public
		h.finish(cs1, cs2)
		return nil
	}
	return fmt.Errorf("secure: handshake: %w", err)
}

// Static is the responder's static public key, once the first message
// picked it: a server tells by it whether the client is on the old key of
// a rotation.
func (h *Handshake) Static() []byte { return h.static }

// Client starts the initiator of transport t. serverKey is the server's
// static public key: required for IK, and for XX a pin the server must
// match (nil accepts any key; PeerStatic then tells which it was).
func Client(t codec.Transport, serverKey []byte, prologue []byte) (*Handshake, error) {
	p, err := pattern(t)
	if err != nil {
		return nil, err
	}
	if t == codec.TransportNoiseIK && len(serverKey) != 32 {
		return nil, errors.New("secure: IK needs the server's 32-byte key")
	}
	dh := &x25519{}
	static, err := dh.GenerateKeypair(rand.Reader) // the client's transport key; the user is proven by LOGIN or RESUME
	if err != nil {
		return nil, err
	}
	cfg := noise.Config{CipherSuite: suiteFor(dh), Pattern: p, Initiator: true, Prologue: prologue, StaticKeypair: static}
	if t == codec.TransportNoiseIK {
		cfg.PeerStatic = serverKey
	}
	hs, err := noise.NewHandshakeState(cfg)
	if err != nil {
		return nil, fmt.Errorf("secure: %w", err)
	}
	h := &Handshake{hs: hs, dh: dh, initiator: true, pinned: serverKey}
	if t == codec.TransportNoiseXX && len(serverKey) == 32 {
		h.hint = serverKey // asks a server in a rotation for this key (see respond)
	}
	return h, nil
}

func pattern(t codec.Transport) (noise.HandshakePattern, error) {
	switch t {
	case codec.TransportNoiseXX:
		return noise.HandshakeXX, nil
	case codec.TransportNoiseIK:
		return noise.HandshakeIK, nil
	}
	return noise.HandshakePattern{}, fmt.Errorf("secure: transport %d is not a Noise handshake", t)
}

// Write appends the next handshake message, length prefix included.
func (h *Handshake) Write(dst []byte) ([]byte, error) {
	if h.hs == nil {
		return dst, errors.New("secure: handshake: the responder writes only after the first message")
	}
	start := len(dst)
	dst = append(dst, 0, 0)
	dst, cs1, cs2, err := h.hs.WriteMessage(dst, h.hint)
	h.hint = nil
	if err != nil {
		return dst[:start], fmt.Errorf("secure: handshake: %w", err)
	}
	binary.BigEndian.PutUint16(dst[start:], uint16(len(dst)-start-2))
	h.finish(cs1, cs2)
	return dst, nil
}

// Read consumes one handshake message body (without its length prefix).
func (h *Handshake) Read(msg []byte) error {
	if h.hs == nil {
		return h.respond(msg)
	}
	_, cs1, cs2, err := h.hs.ReadMessage(nil, msg)
	if err != nil {
		return fmt.Errorf("secure: handshake: %w", err)
	}
	if h.initiator && h.pinned != nil && h.hs.PeerStatic() != nil && !bytes.Equal(h.hs.PeerStatic(), h.pinned) {
		return ErrPinned
	}
	h.finish(cs1, cs2)
	return nil
}

func (h *Handshake) finish(cs1, cs2 *noise.CipherState) {
	if cs1 == nil {
		return
	}
	// The cipher states hold the suite they were made with, and that
	// suite holds this handshake's DH function: remade on the shared
	// Suite, they keep neither the ephemeral key nor ~300 bytes per
	// connection, and the handshake's keys are wiped.
	cs1, cs2 = rebase(cs1), rebase(cs2)
	h.dh.forget()
	// cs1 carries initiator-to-responder traffic, cs2 the other way.
	if h.initiator {
		h.session = &Session{tx: cs1, rx: cs2}
	} else {
		h.session = &Session{tx: cs2, rx: cs1}
	}
}

// rebase is cs on the shared Suite: same key, same nonce.
func rebase(cs *noise.CipherState) *noise.CipherState {
	return noise.UnsafeNewCipherState(Suite, cs.UnsafeKey(), cs.Nonce())
}

// Initiate drives the client's side of the handshake over a stream: it
// sends prefix (the preamble) together with the first message, then
// alternates reading and writing until the session is established.
func (h *Handshake) Initiate(w io.Writer, r io.Reader, prefix []byte) error {
	out := append([]byte(nil), prefix...)
	var in []byte
	for {
		var err error
		if out, err = h.Write(out); err != nil {
			return err
		}
		if _, err := w.Write(out); err != nil {
			return fmt.Errorf("secure: handshake: %w", err)
		}
		if h.session != nil {
			return nil
		}
		out = out[:0]
		if in, err = ReadRecord(r, in); err != nil {
			return fmt.Errorf("secure: handshake: %w", err)
		}
		if err := h.Read(in); err != nil {
			return err
		}
		if h.session != nil {
			return nil
		}
	}
}

// Session returns the record layer once the handshake is complete (nil
// before).
func (h *Handshake) Session() *Session { return h.session }

// PeerStatic is the other side's static public key, once received.
func (h *Handshake) PeerStatic() []byte {
	if h.hs == nil {
		return nil
	}
	return h.hs.PeerStatic()
}

// Session seals and opens records in one direction each.
type Session struct {
	tx, rx *noise.CipherState
}

// Seal appends records carrying frames, which must be whole frames. Frames
// are packed into as few records as possible without splitting one.
func (s *Session) Seal(dst, frames []byte) ([]byte, error) {
	for len(frames) > 0 {
		n := 0
		for n < len(frames) {
			if len(frames)-n < 4 {
				return dst, ErrSplitFrame
			}
			size := 4 + int(binary.BigEndian.Uint32(frames[n:]))
			if n+size > len(frames) {
				return dst, ErrSplitFrame
			}
			if n+size > MaxPlain {
				if n == 0 {
					return dst, fmt.Errorf("secure: a %d-byte frame exceeds one record", size)
				}
				break
			}
			n += size
		}
		start := len(dst)
		dst = append(dst, 0, 0)
		var err error
		if dst, err = s.tx.Encrypt(dst, nil, frames[:n]); err != nil {
			return dst[:start], fmt.Errorf("secure: seal: %w", err)
		}
		binary.BigEndian.PutUint16(dst[start:], uint16(len(dst)-start-2))
		frames = frames[n:]
	}
	return dst, nil
}

// Open decrypts one record body (without its length prefix), appending
// the frames it carries to dst. They must end on a frame boundary.
func (s *Session) Open(dst, record []byte) ([]byte, error) {
	start := len(dst)
	out, err := s.Decrypt(dst, record)
	if err != nil {
		return dst, err
	}
	for p := out[start:]; len(p) > 0; {
		if len(p) < 4 || 4+int(binary.BigEndian.Uint32(p)) > len(p) {
			return dst, ErrSplitFrame
		}
		p = p[4+int(binary.BigEndian.Uint32(p)):]
	}
	return out, nil
}

// Decrypt decrypts one record body (without its length prefix), appending
// its plaintext to dst, and leaves checking the frames in it to the
// caller: a server answers a bad frame inside a good record with an ERROR
// like any other bad frame. An empty plaintext is valid.
func (s *Session) Decrypt(dst, record []byte) ([]byte, error) {
	out, err := s.rx.Decrypt(dst, nil, record)
	if err != nil {
		return dst, ErrRecord
	}
	return out, nil
}

// ReadRecord reads one length-prefixed handshake message or record.
func ReadRecord(r io.Reader, buf []byte) ([]byte, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(hdr[:]))
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	_, err := io.ReadFull(r, buf)
	return buf, err
}
