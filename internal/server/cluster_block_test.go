package server

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/cluster"
)

// homedApart registers alice, carol and a bob homed on a node that is
// not alice's home, on a three-node cluster (password "password1"), and
// returns their ids and bob's name.
func homedApart(t *testing.T, nodes []*clusterNode) (ids map[string]uint64, bobName string) {
	t.Helper()
	ids = map[string]uint64{}
	for _, name := range []string{"alice", "carol", "bob0", "bob1", "bob2", "bob3", "bob4", "bob5"} {
		if bobName != "" {
			break
		}
		c, w, err := authOn(t, nodes[0], func(ctx context.Context, c *client.Conn) (codec.Welcome, error) {
			return c.Register(ctx, name, "password1")
		})
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		ids[name] = w.User
		if name != "alice" && name != "carol" && homeNode(nodes, w.User) != homeNode(nodes, ids["alice"]) {
			bobName, ids["bob"] = name, w.User
		}
	}
	if bobName == "" {
		t.Fatal("every name has alice's home")
	}
	return ids, bobName
}

// TestClusterBlock is TestBlock on a cluster, with every list and check
// away from the session that uses it: alice and bob are homed on
// different nodes, alice connected to the third and bob to alice's home.
// Bob's lists live at his home: his BLOCK, LIST_GET and GROUP_ADDS are
// carried out there; alice's SEND to him is answered SENT and stored
// nowhere (checked at his home); her TYPING is dropped; her group create
// or add naming him is refused (asked of his home by hers); his own SEND
// to her gets ERROR 70 at alice's home node, from his session's copy of
// his list. Unblocking restores all of it.
func TestClusterBlock(t *testing.T) {
	nodes := startClusterNodes(t, 3)
	ids, bobName := homedApart(t, nodes)
	aliceID, bobID, carolID := ids["alice"], ids["bob"], ids["carol"]
	ha, hb := homeNode(nodes, aliceID), homeNode(nodes, bobID)
	third := 3 - ha - hb
	t.Logf("alice home n%d on n%d, bob home n%d on n%d", ha+1, third+1, hb+1, ha+1)
	alice, bob := loginOn(t, nodes[third], "alice"), loginOn(t, nodes[ha], bobName)
	carol := loginOn(t, nodes[hb], "carol")
	ctx := ctx10(t)

	wantCode(t, "block yourself", bob.Block(ctx, bobID), codec.CodeSelfSend)
	wantCode(t, "block no one", bob.Block(ctx, 1<<40), codec.CodeUnknownUser)
	if err := bob.Block(ctx, aliceID); err != nil {
		t.Fatal(err)
	}
	if err := bob.Block(ctx, aliceID); err != nil { // twice: still OK
		t.Fatal(err)
	}
	if got, err := bob.List(ctx, codec.ListBlocked); err != nil || !slices.Equal(got, []uint64{aliceID}) {
		t.Fatalf("blocked list: %v %v", got, err)
	}

	// Alice's SEND: SENT, stored nowhere (bob would get it below).
	hidden, err := alice.Send(bobID, []byte("you there?"), true)
	if err != nil {
		t.Fatal(err)
	}
	if f := next[*codec.Sent](t, alice); f.ID != hidden {
		t.Fatalf("SENT for %v, want %v", f.ID, hidden)
	}
	// Bob's SEND to alice: refused, unblock first.
	id, _ := bob.Send(aliceID, []byte("hi"), true)
	if e := next[*codec.Error](t, bob); e.Code != codec.CodeYouBlocked || e.ID != id {
		t.Fatalf("blocker's SEND: %+v", e)
	}
	// Typing: dropped both ways. Alice's "started" would reach bob ahead
	// of her "stopped" after the unblock (one path, in order): he must get
	// the stopped one first.
	alice.Typing(bobID, true)
	pingPong(t, alice, 1)
	bob.Typing(aliceID, true)
	pingPong(t, bob, 2)

	// Groups: alice may neither create one with bob nor add him.
	_, err = alice.CreateGroup(ctx, "trap", bobID, carolID)
	wantCode(t, "create with a blocker", err, codec.CodeAddRefused)
	if gs, _ := alice.Groups(ctx); len(gs) != 0 {
		t.Fatalf("a refused create made groups %v", gs)
	}
	g, err := alice.CreateGroup(ctx, "team", carolID)
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, "add a blocker", alice.AddMembers(ctx, g.Group, bobID), codec.CodeAddRefused)

	// GROUP_ADDS and CONTACT at bob's home: carol is refused until she is
	// his contact.
	if err := bob.SetGroupAdds(ctx, codec.AddsFromContacts); err != nil {
		t.Fatal(err)
	}
	_, err = carol.CreateGroup(ctx, "club", bobID)
	wantCode(t, "create by a non-contact", err, codec.CodeAddRefused)
	if err := bob.SetContact(ctx, carolID, true); err != nil {
		t.Fatal(err)
	}
	if got, err := bob.List(ctx, codec.ListContacts); err != nil || !slices.Equal(got, []uint64{carolID}) {
		t.Fatalf("contacts: %v %v", got, err)
	}
	if _, err := carol.CreateGroup(ctx, "club", bobID); err != nil {
		t.Fatalf("create by a contact: %v", err)
	}
	if err := bob.SetGroupAdds(ctx, codec.AddsFromEveryone); err != nil {
		t.Fatal(err)
	}

	// Unblock: everything flows again, and only the new message arrives.
	if err := bob.Unblock(ctx, aliceID); err != nil {
		t.Fatal(err)
	}
	if got, err := bob.List(ctx, codec.ListBlocked); err != nil || len(got) != 0 {
		t.Fatalf("blocked list after unblock: %v %v", got, err)
	}
	alice.Typing(bobID, false)
	if f := next[*codec.IsTyping](t, bob); f.From != aliceID || f.State != codec.TypingStopped {
		t.Fatalf("typing after unblock: %+v (a started one is the one sent while blocked)", f)
	}
	visible, _ := alice.Send(bobID, []byte("hello again"), true)
	next[*codec.Sent](t, alice)
	d := next[*codec.Deliver](t, bob)
	if d.ID != visible {
		t.Fatalf("bob got %q (%v), want the message sent after the unblock", d.Body, d.ID)
	}
	bob.Ack(d.Seq, true)
	bob.MarkRead(aliceID, 0, visible)
	for _, kind := range []codec.ReceiptKind{codec.ReceiptDelivered, codec.ReceiptRead} {
		r := next[*codec.Receipt](t, alice)
		if r.Kind != kind || r.IDs.Len() != 1 || r.IDs.At(0) != visible {
			t.Fatalf("receipt %+v, want %v for the visible message only", r, kind)
		}
		alice.Ack(r.Seq, true)
	}
	if err := alice.AddMembers(ctx, g.Group, bobID); err != nil {
		t.Fatalf("add after unblock: %v", err)
	}
	// Bob's session's copy of his list followed the unblock.
	back, _ := bob.Send(aliceID, []byte("hi again"), true)
	until[*codec.Sent](t, bob)
	if d := until[*codec.Deliver](t, alice); d.ID != back {
		t.Fatalf("alice got %v, want bob's message after his unblock", d.ID)
	}

	// A block made from one node holds for a session on another: bob
	// blocks alice again and logs in on the third node, whose copy of his
	// list comes with the login's answer from his home.
	if err := bob.Block(ctx, aliceID); err != nil {
		t.Fatal(err)
	}
	bob = loginOn(t, nodes[third], bobName)
	id, _ = bob.Send(aliceID, []byte("hi"), true)
	if e := until[*codec.Error](t, bob); e.Code != codec.CodeYouBlocked || e.ID != id {
		t.Fatalf("blocker's SEND after a new login: %+v", e)
	}
	hidden, _ = alice.Send(bobID, []byte("still there?"), true)
	if f := until[*codec.Sent](t, alice); f.ID != hidden {
		t.Fatalf("SENT for %v, want %v", f.ID, hidden)
	}
	// Nothing reached bob: up to this PONG he gets only the group add he
	// never acknowledged, which his new login may drain before or after
	// the refusal above.
	if err := bob.Ping(3); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(10 * time.Second)
	for {
		var f codec.Frame
		select {
		case f = <-bob.Events():
		case <-deadline:
			t.Fatal("no PONG within 10s")
		}
		if p, ok := f.(*codec.Pong); ok && p.Nonce == 3 {
			break
		}
		if e, ok := f.(*codec.GroupEvent); ok && e.Group == g.Group && e.Kind == codec.GroupAdded {
			continue
		}
		t.Fatalf("got %T %+v before PONG", f, f)
	}
}

// TestClusterAccountDelete is TestAccountDelete on a cluster: bob is
// homed on one node, connected to another, and in two groups, one homed
// at his home and one at alice's. ACCOUNT_DELETE answers OK and KICKED
// 7; his home takes him out of both groups (alice hears it), expires the
// message waiting in his inbox back to alice, and finishes: his name is
// held, then free again. His token works nowhere, and a SEND to him
// from any node finds no one.
func TestClusterAccountDelete(t *testing.T) {
	t.Setenv("CHATD_TEST_NAME_HOLD", "3s")
	nodes := startClusterNodes(t, 3)
	ids, bobName := homedApart(t, nodes)
	aliceID, bobID, carolID := ids["alice"], ids["bob"], ids["carol"]
	ha, hb := homeNode(nodes, aliceID), homeNode(nodes, bobID)
	third := 3 - ha - hb
	alice, bob := loginOn(t, nodes[third], "alice"), loginOn(t, nodes[ha], bobName)
	carol := loginOn(t, nodes[hb], "carol")
	ctx := ctx10(t)

	team, err := bob.CreateGroup(ctx, "team", aliceID, carolID) // homed at bob's home
	if err != nil {
		t.Fatal(err)
	}
	club, err := alice.CreateGroup(ctx, "club", bobID) // homed at alice's
	if err != nil {
		t.Fatal(err)
	}
	if err := bob.Block(ctx, carolID); err != nil {
		t.Fatal(err)
	}
	waiting, _ := alice.Send(bobID, []byte("unread"), true)
	until[*codec.Sent](t, alice)
	until[*codec.Deliver](t, bob) // delivered, never acknowledged

	wantCode(t, "wrong password", bob.DeleteAccount(ctx, "not the password"), codec.CodeWrongPassword)
	if err := bob.DeleteAccount(ctx, "password1"); err != nil {
		t.Fatal(err)
	}
	if k := until[*codec.Kicked](t, bob); k.Reason != codec.KickDeleted {
		t.Fatalf("kicked: %v", k.Reason)
	}

	// Alice hears bob leave both groups (in the team after handing the
	// admin role on) and gets the waiting message back as expired.
	left := map[uint64]bool{}
	var expired *codec.Receipt
	for len(left) < 2 || expired == nil {
		switch f := recv[codec.Frame](t, alice, time.After(20*time.Second)).(type) {
		case *codec.GroupEvent:
			alice.Ack(f.Seq, true)
			if f.Actor == bobID && f.Kind == codec.GroupLeft {
				if f.Group != team.Group && f.Group != club.Group {
					t.Fatalf("event %+v", f)
				}
				left[f.Group] = true
			}
		case *codec.Receipt:
			alice.Ack(f.Seq, true)
			if expired != nil {
				t.Fatalf("a second receipt %+v", f)
			}
			expired = f
		case *codec.Sent, *codec.GroupInfo:
		default:
			t.Fatalf("got %v %+v", f.Type(), f)
		}
	}
	if expired.Kind != codec.ReceiptExpired || expired.IDs.Len() != 1 || expired.IDs.At(0) != waiting {
		t.Fatalf("receipt %+v, want expired for the message bob never acknowledged", expired)
	}
	for _, c := range []*client.Conn{alice, carol} {
		id, _ := c.Send(bobID, []byte("still there?"), true)
		if e := until[*codec.Error](t, c); e.Code != codec.CodeUnknownRecipient || e.ID != id {
			t.Fatalf("SEND to a deleted account: %+v", e)
		}
	}
	for _, nd := range nodes {
		_, _, err := authOn(t, nd, func(ctx context.Context, c *client.Conn) (codec.Welcome, error) {
			return c.Login(ctx, bobName, "password1")
		})
		if codeOf(err) == 0 {
			t.Fatalf("bob logged in at %s after his deletion", nd.name)
		}
	}
	// The steps finish at his home, which then holds the name for 3 s.
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, w, err := authOn(t, nodes[third], func(ctx context.Context, c *client.Conn) (codec.Welcome, error) {
			return c.Register(ctx, bobName, "password2")
		})
		if err == nil {
			c.Close()
			if w.User == bobID {
				t.Fatalf("the name came back with the deleted id %d", w.User)
			}
			break
		}
		if codeOf(err) != codec.CodeNameTaken || time.Now().After(deadline) {
			t.Fatalf("registering the deleted name: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestClusterListsMoveWithShard: a user's lists and GROUP_ADDS setting
// go with the user's home shard when it moves, and the new home checks
// them.
func TestClusterListsMoveWithShard(t *testing.T) {
	nodes := startClusterNodes(t, 3)
	ids, bobName := homedApart(t, nodes)
	aliceID, bobID, carolID := ids["alice"], ids["bob"], ids["carol"]
	hb := homeNode(nodes, bobID)
	nb := (hb + 1) % 3 // bob's new home
	na := (nb + 1) % 3 // alice's node: not bob's new home
	bob := loginOn(t, nodes[na], bobName)
	ctx := ctx10(t)
	if err := bob.Block(ctx, aliceID); err != nil {
		t.Fatal(err)
	}
	if err := bob.SetContact(ctx, carolID, true); err != nil {
		t.Fatal(err)
	}
	if err := bob.SetGroupAdds(ctx, codec.AddsFromContacts); err != nil {
		t.Fatal(err)
	}
	moveShard(t, nodes[hb], cluster.ShardOf(bobID), nodes[nb].name)
	t.Logf("bob's shard moved from n%d to n%d", hb+1, nb+1)

	// Sessions of a moved user are closed; log in again, here and there.
	bob = loginOn(t, nodes[na], bobName)
	alice := loginOn(t, nodes[na], "alice")
	if got, err := bob.List(ctx, codec.ListBlocked); err != nil || !slices.Equal(got, []uint64{aliceID}) {
		t.Fatalf("blocked list at the new home: %v %v", got, err)
	}
	if got, err := bob.List(ctx, codec.ListContacts); err != nil || !slices.Equal(got, []uint64{carolID}) {
		t.Fatalf("contacts at the new home: %v %v", got, err)
	}
	_, err := alice.CreateGroup(ctx, "trap", bobID)
	wantCode(t, "create with a blocker after the move", err, codec.CodeAddRefused)
	hidden, _ := alice.Send(bobID, []byte("you there?"), true)
	if f := until[*codec.Sent](t, alice); f.ID != hidden {
		t.Fatalf("SENT for %v, want %v", f.ID, hidden)
	}
	if err := bob.Unblock(ctx, aliceID); err != nil {
		t.Fatal(err)
	}
	visible, _ := alice.Send(bobID, []byte("hello again"), true)
	until[*codec.Sent](t, alice)
	if d := until[*codec.Deliver](t, bob); d.ID != visible {
		t.Fatalf("bob got %q (%v), want the message sent after the unblock", d.Body, d.ID)
	}
	// Unblocked but not a contact: the moved setting still refuses her.
	_, err = alice.CreateGroup(ctx, "club", bobID)
	wantCode(t, "create by a non-contact after the move", err, codec.CodeAddRefused)
}

// TestClusterAccountDeleteKilled: the deletion's steps run at the
// account's home and resume there after a kill -9. The home hangs
// before the presence step (the groups and inbox steps done), is killed
// and restarted; the deletion then finishes there: the name, taken
// until then, is free after the hold.
func TestClusterAccountDeleteKilled(t *testing.T) {
	t.Setenv("CHATD_TEST_NAME_HOLD", "2s")
	t.Setenv("CHATD_TEST_DELETE_HALT", "presence")
	nodes := startClusterNodes(t, 3)
	var routes []string
	for _, nd := range nodes {
		routes = append(routes, nd.listen)
	}
	ids, bobName := homedApart(t, nodes)
	aliceID, bobID := ids["alice"], ids["bob"]
	ha, hb := homeNode(nodes, aliceID), homeNode(nodes, bobID)
	third := 3 - ha - hb
	alice, bob := loginOn(t, nodes[third], "alice"), loginOn(t, nodes[ha], bobName)
	ctx := ctx10(t)
	club, err := alice.CreateGroup(ctx, "club", bobID) // homed at alice's home
	if err != nil {
		t.Fatal(err)
	}
	if err := bob.DeleteAccount(ctx, "password1"); err != nil {
		t.Fatal(err)
	}
	if k := until[*codec.Kicked](t, bob); k.Reason != codec.KickDeleted {
		t.Fatalf("kicked: %v", k.Reason)
	}
	// The groups step ran (on alice's home, asked by bob's): she hears
	// him leave.
	for {
		ev := until[*codec.GroupEvent](t, alice)
		alice.Ack(ev.Seq, true)
		if ev.Group == club.Group && ev.Kind == codec.GroupLeft && ev.Actor == bobID {
			break
		}
	}
	register := func() error {
		c, _, err := authOn(t, nodes[third], func(ctx context.Context, c *client.Conn) (codec.Welcome, error) {
			return c.Register(ctx, bobName, "password2")
		})
		if err == nil {
			c.Close()
		}
		return err
	}
	wantCode(t, "the name during the hung deletion", register(), codec.CodeNameTaken)

	nodes[hb].kill()
	t.Setenv("CHATD_TEST_DELETE_HALT", "")
	nodes[hb].restart(t, strings.Join(routes, ","))
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := register()
		if err == nil {
			break
		}
		if codeOf(err) != codec.CodeNameTaken || time.Now().After(deadline) {
			t.Fatalf("registering the deleted name after the restart: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestClusterBlockHidesPresence: bob's block hides his presence from
// alice on a node that is neither his home nor his session's, as on one
// node: she sees him hidden after the block (already subscribed, and on
// a fresh subscription), his real state after the unblock, and carol,
// whom he did not block, sees him online throughout.
func TestClusterBlockHidesPresence(t *testing.T) {
	nodes := startClusterNodes(t, 3)
	ids, bobName := homedApart(t, nodes)
	aliceID, bobID := ids["alice"], ids["bob"]
	ha, hb := homeNode(nodes, aliceID), homeNode(nodes, bobID)
	third := 3 - ha - hb
	bob := loginOn(t, nodes[ha], bobName)
	alice, carol := loginOn(t, nodes[third], "alice"), loginOn(t, nodes[third], "carol")
	ctx := ctx10(t)
	sees := func(c *client.Conn, want codec.PresenceState) {
		t.Helper()
		waitFrame(t, c, func(f codec.Frame) bool {
			p, ok := f.(*codec.Presence)
			return ok && p.User == bobID && p.State == want
		})
	}
	for _, c := range []*client.Conn{alice, carol} {
		if err := c.WriteRaw((&codec.Subscribe{Users: codec.Users(bobID)}).Append(nil)); err != nil {
			t.Fatal(err)
		}
		sees(c, codec.PresenceOnline)
	}

	if err := bob.Block(ctx, aliceID); err != nil {
		t.Fatal(err)
	}
	sees(alice, codec.PresenceHidden)
	// A fresh subscription (the node forgot bob when its only watcher
	// left) is hidden too once his home has answered.
	if err := alice.WriteRaw((&codec.Unsubscribe{Users: codec.Users(bobID)}).Append(nil)); err != nil {
		t.Fatal(err)
	}
	if err := carol.WriteRaw((&codec.Unsubscribe{Users: codec.Users(bobID)}).Append(nil)); err != nil {
		t.Fatal(err)
	}
	pingPong(t, alice, 1)
	pingPong(t, carol, 2)
	if err := alice.WriteRaw((&codec.Subscribe{Users: codec.Users(bobID)}).Append(nil)); err != nil {
		t.Fatal(err)
	}
	waitFrame(t, alice, func(f codec.Frame) bool {
		p, ok := f.(*codec.Presence)
		if ok && p.User == bobID && p.State != codec.PresenceHidden {
			t.Fatalf("alice saw bob %v while he blocks her", p.State)
		}
		return ok && p.User == bobID
	})

	if err := bob.Unblock(ctx, aliceID); err != nil {
		t.Fatal(err)
	}
	sees(alice, codec.PresenceOnline)
}
