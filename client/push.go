package client

import (
	"context"

	"github.com/chatd/chatd/codec"
)

// PushDevice is the device id push subscriptions use until an account may
// have several devices.
const PushDevice = 1

// PushSubscribe asks the server to send Web Push notifications to
// endpoint while this user is offline. endpoint, p256dh (65 bytes) and
// auth (16 bytes) are what the platform's push subscription gives
// (PushSubscription.endpoint and getKey("p256dh"), getKey("auth") in a
// browser). A new subscription for the device replaces the old one.
func (c *Conn) PushSubscribe(ctx context.Context, endpoint string, p256dh, auth []byte) error {
	return c.ok(ctx, func(req uint32) codec.Frame {
		return &codec.PushSubscribe{Req: req, Device: PushDevice, Endpoint: []byte(endpoint), P256dh: p256dh, Auth: auth}
	})
}

// PushSubscriptions lists this user's subscriptions, with the server's
// VAPID public key (the applicationServerKey to subscribe with; empty
// when the server sends no pushes).
func (c *Conn) PushSubscriptions(ctx context.Context) (*codec.PushSubs, error) {
	r, err := c.request(ctx, func(req uint32) codec.Frame { return &codec.PushList{Req: req} })
	if err != nil {
		return nil, err
	}
	return r.(*codec.PushSubs), nil
}

// PushRemove deletes the subscription of device (PushDevice).
func (c *Conn) PushRemove(ctx context.Context, device uint32) error {
	return c.ok(ctx, func(req uint32) codec.Frame { return &codec.PushRemove{Req: req, Device: device} })
}
