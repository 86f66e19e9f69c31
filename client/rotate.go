package client

import (
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/secure"
)

// VerifyRotation checks a KEY_ROTATE against the server key a connection
// was made with (Conn.ServerKey): it must come from that key and carry
// its signature. Only then may a client pin the new key.
func VerifyRotation(pinned []byte, f *codec.KeyRotate) error {
	return secure.VerifyRotation(pinned, rotationOf(f))
}

func rotationOf(f *codec.KeyRotate) secure.Rotation {
	return secure.Rotation{Old: f.Old[:], New: f.New[:], ValidFrom: time.UnixMilli(int64(f.ValidFrom)), Sig: f.Sig[:]}
}

// rotate handles a KEY_ROTATE on conn: a good one moves the pin (at once,
// for the next connection, or when its validity starts) and is passed on
// to the application; any other is dropped, and the pin stays.
func (c *Client) rotate(conn *Conn, f *codec.KeyRotate) bool {
	if VerifyRotation(conn.ServerKey(), f) != nil {
		return false
	}
	next := append([]byte(nil), f.New[:]...)
	from := time.UnixMilli(int64(f.ValidFrom))
	c.mu.Lock()
	if time.Now().Before(from) {
		c.next, c.nextFrom = next, from
	} else {
		c.opts.ServerKey, c.next = next, nil
	}
	hook := c.opts.OnServerKey
	c.mu.Unlock()
	if hook != nil {
		hook(append([]byte(nil), f.Old[:]...), next, from)
	}
	return true
}

// pin is the server key the next connection pins: an announced key once
// its validity has started, else the pinned one (nil: trust on first use).
// c.mu must be held.
func (c *Client) pin(now time.Time) []byte {
	if c.next != nil && !now.Before(c.nextFrom) {
		c.opts.ServerKey, c.next = c.next, nil
	}
	return c.opts.ServerKey
}
