package server

import (
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/cluster"
	"github.com/chatd/chatd/internal/push/pushtest"
)

// listSubs is user's subscriptions as PUSH_LIST on c shows them.
func listSubs(t *testing.T, c *client.Conn) []codec.PushSub {
	t.Helper()
	subs, err := c.PushSubscriptions(ctx10(t))
	if err != nil {
		t.Fatalf("PUSH_LIST: %v", err)
	}
	return subs.Subs
}

// pushUntil has from send to user until a push comes (the user's last
// session may still be closing somewhere: one push per 100 ms window at
// most) and returns it.
func pushUntil(t *testing.T, recv *pushtest.Receiver, from *client.Conn, user uint64) pushtest.Push {
	t.Helper()
	before := len(recv.Pushes())
	waitFor(t, func() bool {
		sendAll(t, from, user, 1)
		_, err := recv.Wait(before+1, 500*time.Millisecond)
		return err == nil
	})
	return recv.Pushes()[before]
}

// TestClusterPushAtHome: in a cluster a user's subscription is kept by its
// home node, and PUSH_* frames work on any node (they run at the home);
// the home pushes when the user has no session anywhere, and a session on
// another node counts as online.
func TestClusterPushAtHome(t *testing.T) {
	nodes := startClusterNodes(t, 3)
	recv := pushtest.New(nil) // each node made its own VAPID key: any key, still verified
	defer recv.Close()
	dev := recv.Device("bob")
	ids := registerAll(t, nodes[0], "alice", "bob")
	hb := homeNode(nodes, ids["bob"])
	x, y := otherThan(hb), otherThan(hb, otherThan(hb))

	// Subscribe on a node that is not bob's home; list on another one.
	c := loginOn(t, nodes[x], "bob")
	if err := c.PushSubscribe(ctx10(t), dev.Endpoint, dev.P256dh, dev.Auth); err != nil {
		t.Fatalf("PUSH_SUBSCRIBE at n%d, not bob's home: %v", x+1, err)
	}
	c.Close()
	c = loginOn(t, nodes[y], "bob")
	if subs := listSubs(t, c); len(subs) != 1 || string(subs[0].Endpoint) != dev.Endpoint {
		t.Fatalf("PUSH_LIST at n%d: %+v", y+1, subs)
	}
	c.Close()

	alice := loginOn(t, nodes[x], "alice")
	if got := pushUntil(t, recv, alice, ids["bob"]); got.Device != "bob" || got.Urgency != "high" {
		t.Fatalf("push %+v", got)
	}

	// bob online at a node that is not his home: no push.
	bobConn := loginOn(t, nodes[y], "bob")
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
	sendAll(t, alice, ids["bob"], 2)
	m := until[*codec.Deliver](t, bobConn) // bob is online there, and served
	bobConn.Ack(m.Seq, true)
	// Due runs before SENT; a push would come within the window (100 ms).
	if poll(time.Second, func() bool { return len(recv.Pushes()) > before }) {
		t.Fatalf("a push to bob while he was online at n%d: %+v", y+1, recv.Pushes()[before:])
	}

	// PUSH_REMOVE away from home removes it at the home.
	if err := bobConn.PushRemove(ctx10(t), client.PushDevice); err != nil {
		t.Fatalf("PUSH_REMOVE at n%d: %v", y+1, err)
	}
	bobConn.Close()
	c = loginOn(t, nodes[hb], "bob")
	if subs := listSubs(t, c); len(subs) != 0 {
		t.Fatalf("PUSH_LIST at bob's home after PUSH_REMOVE elsewhere: %+v", subs)
	}
}

// TestClusterPushLogoutAndPasswordAway: LOGOUT and PASSWORD handled on a
// node that is not the user's home delete its subscriptions at the home.
func TestClusterPushLogoutAndPasswordAway(t *testing.T) {
	nodes := startClusterNodes(t, 3)
	recv := pushtest.New(nil)
	defer recv.Close()
	names := []string{"logout", "password"}
	ids := registerAll(t, nodes[0], names...)
	for _, how := range names {
		h := homeNode(nodes, ids[how])
		away := otherThan(h)
		d := recv.Device(how)
		c := loginOn(t, nodes[away], how)
		if err := c.PushSubscribe(ctx10(t), d.Endpoint, d.P256dh, d.Auth); err != nil {
			t.Fatal(err)
		}
		if how == "logout" {
			if err := c.Logout(); err != nil {
				t.Fatal(err)
			}
			if k := waitKicked(t, c); k != codec.KickLoggedOut {
				t.Fatalf("LOGOUT ended with %v", k)
			}
			c = loginOn(t, nodes[h], how)
		} else {
			if err := c.WriteRaw((&codec.Password{Old: []byte("password1"), New: []byte("password1")}).Append(nil)); err != nil {
				t.Fatal(err)
			}
			until[*codec.Welcome](t, c) // the subscriptions are deleted before it
		}
		// Asked at the home for LOGOUT, away for PASSWORD.
		if subs := listSubs(t, c); len(subs) != 0 {
			t.Fatalf("%s at n%d (home n%d) left subscriptions: %+v", how, away+1, h+1, subs)
		}
	}
}

// TestClusterPushMovesWithShard: a shard move takes its users'
// subscriptions to the new home, which then pushes for them.
func TestClusterPushMovesWithShard(t *testing.T) {
	nodes := startClusterNodes(t, 3)
	recv := pushtest.New(nil)
	defer recv.Close()
	dev := recv.Device("bob")
	ids := registerAll(t, nodes[0], "alice", "bob")
	hb := homeNode(nodes, ids["bob"])
	c := loginOn(t, nodes[hb], "bob")
	if err := c.PushSubscribe(ctx10(t), dev.Endpoint, dev.P256dh, dev.Auth); err != nil {
		t.Fatal(err)
	}
	c.Close()
	to := otherThan(hb)
	moveShard(t, nodes[hb], cluster.ShardOf(ids["bob"]), nodes[to].name)

	// The new home lists it (asked from the old home, which forwards)...
	c = loginOn(t, nodes[hb], "bob")
	var subs []codec.PushSub
	waitFor(t, func() bool { // ERROR 63 until this node sees the new map
		r, err := c.PushSubscriptions(ctx10(t))
		if codeOf(err) == codec.CodeUnavailable {
			return false
		}
		if err != nil {
			t.Fatal(err)
		}
		subs = r.Subs
		return true
	})
	if len(subs) != 1 || string(subs[0].Endpoint) != dev.Endpoint {
		t.Fatalf("bob's subscriptions after the move: %+v", subs)
	}
	c.Close()
	// ... and pushes when bob is offline.
	alice := loginOn(t, nodes[otherThan(to)], "alice")
	if got := pushUntil(t, recv, alice, ids["bob"]); got.Device != "bob" {
		t.Fatalf("push %+v", got)
	}
}
