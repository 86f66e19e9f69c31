package client

import (
	"context"
	"errors"

	"github.com/chatd/chatd/codec"
)

// The prekey directory (PROTOCOL.md section 11). The server's pushes,
// KEYS_LOW (upload more one-time prekeys) and IDENTITY_CHANGED (a peer's
// device has a new identity key), arrive on Events like any other
// unsolicited frame, on a Conn and on a Client alike.

// ErrNotConnected is returned by a Client's requests while it reconnects.
var ErrNotConnected = errors.New("client: not connected")

// UploadKeys, KeyCounts, FetchKeys and CheckKeys on a Client run on its
// current connection: while it reconnects they fail with ErrNotConnected
// (retry after the next StateConnected).

func (c *Client) UploadKeys(ctx context.Context, up *codec.KeysUpload) (codec.KeysCounts, error) {
	if conn := c.Conn(); conn != nil {
		return conn.UploadKeys(ctx, up)
	}
	return codec.KeysCounts{}, ErrNotConnected
}

func (c *Client) KeyCounts(ctx context.Context) (codec.KeysCounts, error) {
	if conn := c.Conn(); conn != nil {
		return conn.KeyCounts(ctx)
	}
	return codec.KeysCounts{}, ErrNotConnected
}

func (c *Client) FetchKeys(ctx context.Context, user uint64, dev uint16) ([]codec.Bundle, error) {
	if conn := c.Conn(); conn != nil {
		return conn.FetchKeys(ctx, user, dev)
	}
	return nil, ErrNotConnected
}

func (c *Client) CheckKeys(ctx context.Context, digest codec.Digest) (bool, error) {
	if conn := c.Conn(); conn != nil {
		return conn.CheckKeys(ctx, digest)
	}
	return false, ErrNotConnected
}

// UploadKeys sends one KEYS_UPLOAD (DeviceKeys.Uploads builds them) and
// returns the device's one-time prekey counts after it.
func (c *Conn) UploadKeys(ctx context.Context, up *codec.KeysUpload) (codec.KeysCounts, error) {
	r, err := c.request(ctx, func(req uint32) codec.Frame { up.Req = req; return up })
	if err != nil {
		return codec.KeysCounts{}, err
	}
	return *r.(*codec.KeysCounts), nil
}

// KeyCounts returns how many one-time prekeys the server holds for this
// device; ERROR 82 when it never uploaded.
func (c *Conn) KeyCounts(ctx context.Context) (codec.KeysCounts, error) {
	r, err := c.request(ctx, func(req uint32) codec.Frame { return &codec.KeysCount{Req: req} })
	if err != nil {
		return codec.KeysCounts{}, err
	}
	return *r.(*codec.KeysCounts), nil
}

// FetchKeys takes a bundle of user's keys for device dev, or for each of
// its devices when dev is 0. Verify each bundle's signatures (and its
// identity key against the one you know) before using it: the server is
// not trusted with that.
func (c *Conn) FetchKeys(ctx context.Context, user uint64, dev uint16) ([]codec.Bundle, error) {
	r, err := c.request(ctx, func(req uint32) codec.Frame { return &codec.KeysFetch{Req: req, User: user, Device: dev} })
	if err != nil {
		return nil, err
	}
	return r.(*codec.KeysBundle).Bundles, nil
}

// CheckKeys reports whether the server's long-lived keys for this device
// match digest (codec.KeysDigest, DeviceKeys.Digest). On false, upload
// the long-lived keys again.
func (c *Conn) CheckKeys(ctx context.Context, digest codec.Digest) (bool, error) {
	_, err := c.request(ctx, func(req uint32) codec.Frame { return &codec.KeysCheck{Req: req, Digest: digest} })
	var e *codec.Error
	if errors.As(err, &e) && e.Code == codec.CodeKeysMismatch {
		return false, nil
	}
	return err == nil, err
}
