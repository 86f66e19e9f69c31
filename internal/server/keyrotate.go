package server

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/secure"
	"go.uber.org/zap"
)

// Server key rotation (PROTOCOL.md section 8): the operator rotates, the
// server then holds the old key and the new one, answers each client
// with the key it asks for, and tells every session on the old key, right
// after WELCOME and at the moment of the rotation, which key comes next
// (KEY_ROTATE, signed by the old key). Clients move their pin and ask for
// the new key from their next connection. Once they had time to, the
// operator retires the old key; a client still asking for it is refused
// with ERROR 78.

// KeyReport is what the key actions answer: the keys the server now
// holds, in hex.
type KeyReport struct {
	Current  string    `json:"current"`
	Next     string    `json:"next,omitempty"`
	NextFrom time.Time `json:"next_from,omitzero"`
	Retired  []string  `json:"retired,omitempty"`
	// Nodes says, on a cluster, what each other node did with the set
	// (keysync.go): "ok", or why not.
	Nodes map[string]string `json:"nodes,omitempty"`
}

// ReportKeys describes k.
func ReportKeys(k *secure.Keys) KeyReport {
	r := KeyReport{Current: hex.EncodeToString(k.Current.Public)}
	if k.Next != nil {
		r.Next, r.NextFrom = hex.EncodeToString(k.Next.Public), k.NextFrom
	}
	for _, p := range k.Retired {
		r.Retired = append(r.Retired, hex.EncodeToString(p))
	}
	return r
}

// Keys returns the server's Noise keys.
func (s *Server) Keys() *secure.Keys { return s.keys.Keys() }

// RotateKey makes the next Noise key, valid from now, holds it beside the
// current one, and announces it to every session on the current key. On
// a cluster every other node then takes the same keys (keysync.go; a node
// that did not is logged, and `chatd key` shows it).
func (s *Server) RotateKey() (*secure.Keys, error) { return keysOf(s.rotateKey()) }

// RetireKey ends a rotation: the next key becomes the only one, and
// clients asking for the old key are refused with ERROR 78. On a cluster
// every other node then retires it too.
func (s *Server) RetireKey() (*secure.Keys, error) { return keysOf(s.retireKey()) }

// ReloadKeys reads the key files again (after they were changed by hand,
// or with `chatd key --data` on a stopped copy) and, on a cluster, sends
// the set to every other node: the way to bring a node that was down
// during a rotation up to date.
func (s *Server) ReloadKeys() (*secure.Keys, error) { return keysOf(s.reloadKeys()) }

func (s *Server) rotateKey() (*secure.Keys, map[string]string, error) {
	return s.changeKeys("rotate", func() (*secure.Keys, error) { return secure.Rotate(s.keyPath, time.Now()) })
}

func (s *Server) retireKey() (*secure.Keys, map[string]string, error) {
	return s.changeKeys("retire", func() (*secure.Keys, error) { return secure.Retire(s.keyPath) })
}

func (s *Server) reloadKeys() (*secure.Keys, map[string]string, error) {
	return s.changeKeys("reload", func() (*secure.Keys, error) {
		k, _, err := secure.LoadKeys(s.keyPath)
		return k, err
	})
}

func keysOf(k *secure.Keys, _ map[string]string, err error) (*secure.Keys, error) { return k, err }

// changeKeys runs a key change here, then sends the result to the other
// nodes and returns what each did.
func (s *Server) changeKeys(op string, change func() (*secure.Keys, error)) (*secure.Keys, map[string]string, error) {
	s.keyMu.Lock()
	k, err := change()
	if err != nil {
		s.keyMu.Unlock()
		return nil, nil, fmt.Errorf("key %s: %w", op, err)
	}
	s.useKeys(k)
	s.keyMu.Unlock() // not held across the requests: two nodes changing at once must not wait on each other
	return k, s.spreadKeys(op, k), nil
}

// useKeys swaps in k for new handshakes and announces its rotation, if
// any, to the sessions already on the old key.
func (s *Server) useKeys(k *secure.Keys) {
	s.keys.Set(k)
	fields := []zap.Field{zap.String("current", hex.EncodeToString(k.Current.Public))}
	if k.Next != nil {
		fields = append(fields, zap.String("next", hex.EncodeToString(k.Next.Public)), zap.Time("next_from", k.NextFrom))
	}
	s.log.Info("server Noise keys", fields...)
	if k.Rotation == nil {
		return
	}
	s.conns.Each(func(c *Conn) {
		if c.IsAuthenticated() {
			s.announceKey(c)
			c.Flush()
		}
	})
}

// announceKey queues KEY_ROTATE on c if a rotation is under way and c's
// handshake used the old key.
func (s *Server) announceKey(c *Conn) {
	k := s.keys.Keys()
	if k.Rotation == nil || !bytes.Equal(c.ServerKey(), k.Rotation.Old) {
		return
	}
	if buf, ok := c.Begin(); ok {
		c.End(rotationFrame(k.Rotation).Append(buf))
	}
}

func rotationFrame(r *secure.Rotation) *codec.KeyRotate {
	f := &codec.KeyRotate{ValidFrom: uint64(r.ValidFrom.UnixMilli())}
	copy(f.Old[:], r.Old)
	copy(f.New[:], r.New)
	copy(f.Sig[:], r.Sig)
	return f
}
