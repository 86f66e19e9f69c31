package client

import (
	"context"

	"github.com/chatd/chatd/codec"
)

// Block blocks user: their messages to the caller are accepted but never
// delivered, and they see the caller's presence as hidden.
func (c *Conn) Block(ctx context.Context, user uint64) error {
	return c.ok(ctx, func(req uint32) codec.Frame { return &codec.Block{Req: req, User: user} })
}

// Unblock undoes Block.
func (c *Conn) Unblock(ctx context.Context, user uint64) error {
	return c.ok(ctx, func(req uint32) codec.Frame { return &codec.Unblock{Req: req, User: user} })
}

// SetContact adds user to the caller's contacts (on) or removes them.
func (c *Conn) SetContact(ctx context.Context, user uint64, on bool) error {
	return c.ok(ctx, func(req uint32) codec.Frame { return &codec.Contact{Req: req, User: user, On: on} })
}

// SetGroupAdds sets who may add the caller to groups.
func (c *Conn) SetGroupAdds(ctx context.Context, from codec.AddsFrom) error {
	return c.ok(ctx, func(req uint32) codec.Frame { return &codec.GroupAdds{Req: req, From: from} })
}

// List returns one of the caller's lists (blocked users, contacts).
func (c *Conn) List(ctx context.Context, kind codec.ListKind) ([]uint64, error) {
	r, err := c.request(ctx, func(req uint32) codec.Frame { return &codec.ListGet{Req: req, Kind: kind} })
	if err != nil {
		return nil, err
	}
	l := r.(*codec.List).Users
	out := make([]uint64, l.Len())
	for i := range out {
		out[i] = l.At(i)
	}
	return out, nil
}

// DeleteAccount deletes the caller's account, password confirming it.
// Once it returns nil the deletion is recorded and will complete; the
// server then ends the session with KICKED (account deleted).
func (c *Conn) DeleteAccount(ctx context.Context, password string) error {
	return c.ok(ctx, func(req uint32) codec.Frame { return &codec.AccountDelete{Req: req, Password: []byte(password)} })
}
