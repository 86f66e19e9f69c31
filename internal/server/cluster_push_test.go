package server

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/push/pushtest"
)

// TestClusterPushAtHome: in a cluster a user's subscription is kept by its
// home node (other nodes answer ERROR 96), the home pushes when the user
// has no session anywhere, and a session on another node counts as online.
func TestClusterPushAtHome(t *testing.T) {
	nodes := startClusterNodes(t, 3)
	recv := pushtest.New(nil) // each node made its own VAPID key: any key, still verified
	defer recv.Close()
	dev := recv.Device("bob")
	if _, _, err := authOn(t, nodes[0], func(ctx context.Context, c *client.Conn) (codec.Welcome, error) {
		return c.Register(ctx, "bob", "password1")
	}); err != nil {
		t.Fatal(err)
	}
	var home *clusterNode
	var away []*clusterNode
	for _, nd := range nodes {
		c, _, err := authOn(t, nd, func(ctx context.Context, c *client.Conn) (codec.Welcome, error) {
			return c.Login(ctx, "bob", "password1")
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = c.PushSubscribe(ctx, dev.Endpoint, dev.P256dh, dev.Auth)
		cancel()
		c.Close()
		var e *codec.Error
		switch {
		case err == nil:
			if home != nil {
				t.Fatalf("both %s and %s took bob's subscription", home.name, nd.name)
			}
			home = nd
		case errors.As(err, &e) && e.Code == codec.CodePushNotHome:
			away = append(away, nd)
		default:
			t.Fatalf("PUSH_SUBSCRIBE at %s: %v", nd.name, err)
		}
	}
	if home == nil {
		t.Fatal("no node took bob's subscription")
	}

	alice, _, err := authOn(t, away[0], func(ctx context.Context, c *client.Conn) (codec.Welcome, error) {
		return c.Register(ctx, "alice", "password1")
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bob, err := alice.LookupName(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	// bob's session at the last node may still be closing there: send
	// until a push comes (one per 100 ms window at most).
	var got []pushtest.Push
	waitFor(t, func() bool {
		sendAll(t, alice, bob, 1)
		got, err = recv.Wait(1, 500*time.Millisecond)
		return err == nil
	})
	if got[0].Device != "bob" || got[0].Urgency != "high" {
		t.Fatalf("push %+v", got[0])
	}

	// bob online at a node that is not his home: no push.
	bobConn, _, err := authOn(t, away[len(away)-1], func(ctx context.Context, c *client.Conn) (codec.Welcome, error) {
		return c.Login(ctx, "bob", "password1")
	})
	if err != nil {
		t.Fatal(err)
	}
	// Messages the loop above sent after the first push may still have a
	// push due from before bob came online, coming within a window: let
	// those arrive before counting.
	before := len(recv.Pushes())
	for range 10 {
		if !poll(300*time.Millisecond, func() bool { return len(recv.Pushes()) > before }) {
			break
		}
		before = len(recv.Pushes())
	}
	sendAll(t, alice, bob, 2)
	m := until[*codec.Deliver](t, bobConn) // bob is online there, and served
	bobConn.Ack(m.Seq, true)
	// Due runs before SENT; a push would come within the window (100 ms).
	if poll(time.Second, func() bool { return len(recv.Pushes()) > before }) {
		t.Fatalf("a push to bob while he was online at %s: %+v", away[len(away)-1].name, recv.Pushes()[before:])
	}
}
