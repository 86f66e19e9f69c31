package server

import (
	"context"
	"testing"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
)

// Presence across nodes: bob, on a node that is neither alice's home nor
// the node of her session, sees her come online, go offline with a last
// seen, hide it, and go offline when her session's node dies.
func TestClusterPresenceAcrossNodes(t *testing.T) {
	t.Parallel() // most of its time is waiting on other processes; -parallel bounds how many run at once
	nodes := startClusterNodes(t, 3)
	ids := map[string]uint64{}
	for _, name := range []string{"alice", "bob"} {
		c, w, err := authOn(t, nodes[0], func(ctx context.Context, c *client.Conn) (codec.Welcome, error) {
			return c.Register(ctx, name, "password1")
		})
		if err != nil {
			t.Fatal(err)
		}
		ids[name] = w.User
		c.Close()
	}
	ha := homeNode(nodes, ids["alice"])
	x := (ha + 1) % 3 // alice's sessions
	y := 3 - ha - x   // bob's
	bob := loginOn(t, nodes[y], "bob")
	presenceOf := func(want codec.PresenceState) *codec.Presence {
		t.Helper()
		var got *codec.Presence
		waitFrame(t, bob, func(f codec.Frame) bool {
			p, ok := f.(*codec.Presence)
			if ok && p.User == ids["alice"] && p.State == want {
				got = p
				return true
			}
			return false
		})
		return got
	}
	if err := bob.WriteRaw((&codec.Subscribe{Users: codec.Users(ids["alice"])}).Append(nil)); err != nil {
		t.Fatal(err)
	}
	presenceOf(codec.PresenceOffline)

	alice := loginOn(t, nodes[x], "alice")
	presenceOf(codec.PresenceOnline)
	alice.Close()
	if p := presenceOf(codec.PresenceOffline); p.LastSeen == 0 {
		t.Fatal("offline without a last seen")
	}

	alice = loginOn(t, nodes[x], "alice")
	presenceOf(codec.PresenceOnline)
	if err := alice.WriteRaw((&codec.Privacy{Flags: codec.PrivacyHideLastSeen}).Append(nil)); err != nil {
		t.Fatal(err)
	}
	presenceOf(codec.PresenceHidden)
	if err := alice.WriteRaw((&codec.Privacy{}).Append(nil)); err != nil {
		t.Fatal(err)
	}
	presenceOf(codec.PresenceOnline)

	// Her session's node dies: she reads as offline.
	nodes[x].kill()
	presenceOf(codec.PresenceOffline)
}
