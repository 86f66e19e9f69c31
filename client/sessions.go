package client

import (
	"context"
	"fmt"
	"unicode/utf8"

	"github.com/chatd/chatd/codec"
)

// Sessions lists the caller's account sessions (one per device that
// logged in), most recently seen first; the caller's own carries
// codec.SessionCurrent.
func (c *Conn) Sessions(ctx context.Context) ([]codec.SessionInfo, error) {
	r, err := c.request(ctx, func(req uint32) codec.Frame { return &codec.Sessions{Req: req} })
	if err != nil {
		return nil, err
	}
	return r.(*codec.SessionList).Sessions, nil
}

// EndSession ends one of the caller's sessions: its token no longer
// resumes and its connection, if one is open, gets KICKED (session
// revoked). Ending the caller's own session ends this connection too,
// after the OK.
func (c *Conn) EndSession(ctx context.Context, session uint64) error {
	return c.ok(ctx, func(req uint32) codec.Frame { return &codec.SessionRevoke{Req: req, Session: session} })
}

// LabelSession names the caller's own session (a device name, at most
// codec.MaxLabel bytes of UTF-8), as Sessions shows it to the user's
// other devices.
func (c *Conn) LabelSession(ctx context.Context, label string) error {
	if len(label) > codec.MaxLabel || !utf8.ValidString(label) {
		return fmt.Errorf("client: a session label is at most %d bytes of UTF-8", codec.MaxLabel)
	}
	return c.ok(ctx, func(req uint32) codec.Frame { return &codec.SessionLabel{Req: req, Label: []byte(label)} })
}
