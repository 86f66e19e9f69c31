package server

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/store"
)

// request sends a group request frame and returns the reply.
func request(t *testing.T, c *client.Conn, f codec.Frame) codec.Frame {
	t.Helper()
	if err := c.WriteRaw(f.Append(nil)); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case r := <-c.Events():
			switch r.(type) {
			case *codec.GroupInfo, *codec.Groups, *codec.OK, *codec.Error:
				return r
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no reply to %v", f.Type())
		}
	}
}

func createGroup(t *testing.T, owner *client.Conn, name string, members ...*client.Conn) uint64 {
	t.Helper()
	var users []uint64
	for _, m := range members {
		users = append(users, m.Welcome.User)
	}
	r := request(t, owner, &codec.GroupCreate{Req: 1, Name: []byte(name), Users: codec.Users(users...)})
	info, ok := r.(*codec.GroupInfo)
	if !ok {
		t.Fatalf("create: %+v", r)
	}
	return info.Group
}

// groupDeliveries reads n DELIVERs for group gid from c, acknowledging
// everything (group events included), and returns their bodies in order.
func groupDeliveries(t *testing.T, c *client.Conn, gid uint64, n int) []string {
	t.Helper()
	var out []string
	for len(out) < n {
		select {
		case f := <-c.Events():
			switch f := f.(type) {
			case *codec.Deliver:
				if f.Group != gid {
					t.Fatalf("delivery for group %d, want %d", f.Group, gid)
				}
				out = append(out, string(f.Body))
				c.Ack(f.Seq, true)
			case *codec.GroupEvent:
				c.Ack(f.Seq, true)
			case *codec.Receipt:
				c.Ack(f.Seq, true)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("got %d of %d group deliveries", len(out), n)
		}
	}
	return out
}

func TestGroupFanOutSameOrderAndReceipts(t *testing.T) {
	s := startServer(t, testConfig(t))
	alice, bob, carol, dave := register(t, s, "alice"), register(t, s, "bob"), register(t, s, "carol"), register(t, s, "dave")
	gid := createGroup(t, alice, "team", bob, carol, dave)

	// Three members send at once: every member must see one order.
	const per = 40
	var wg sync.WaitGroup
	for _, c := range []*client.Conn{alice, bob, carol} {
		wg.Add(1)
		go func(c *client.Conn) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				c.SendID(client.NewID(), codec.FlagGroup, gid, []byte(fmt.Sprintf("%d:%d", c.Welcome.User, i)), true)
			}
		}(c)
	}
	wg.Wait()
	// dave only reads; the others see everyone's but their own.
	daveSeq := groupDeliveries(t, dave, gid, 3*per)
	for _, c := range []*client.Conn{alice, bob, carol} {
		got := groupDeliveries(t, c, gid, 2*per)
		// The order among the messages c received must match dave's.
		j := 0
		for _, body := range daveSeq {
			if j < len(got) && got[j] == body {
				j++
			}
		}
		if j != len(got) {
			t.Fatalf("user %d sees the group in a different order than dave", c.Welcome.User)
		}
	}
}

func TestGroupRules(t *testing.T) {
	s := startServer(t, testConfig(t))
	alice, bob, carol, eve := register(t, s, "alice"), register(t, s, "bob"), register(t, s, "carol"), register(t, s, "eve")
	gid := createGroup(t, alice, "team", bob, carol)

	// A non-member can neither send nor learn the members.
	id, _ := eve.SendID(client.NewID(), codec.FlagGroup, gid, []byte("let me in"), true), codec.MsgID{}
	_ = id
	if e := next[*codec.Error](t, eve); e.Code != codec.CodeNotMember {
		t.Fatalf("non-member send: %v", e.Code)
	}
	if r := request(t, eve, &codec.GroupGet{GroupRef: codec.GroupRef{Req: 2, Group: gid}}); r.(*codec.Error).Code != codec.CodeNotMember {
		t.Fatalf("non-member GROUP_GET: %+v", r)
	}
	// Only admins manage the group.
	if r := request(t, bob, &codec.GroupAdd{GroupMembers: codec.GroupMembers{Req: 3, Group: gid, Users: codec.Users(eve.Welcome.User)}}); r.(*codec.Error).Code != codec.CodeNotAdmin {
		t.Fatalf("member adding: %+v", r)
	}

	// A message before the removal reaches carol; nothing after it does.
	alice.SendID(client.NewID(), codec.FlagGroup, gid, []byte("before"), true)
	if got := groupDeliveries(t, carol, gid, 1); got[0] != "before" {
		t.Fatalf("carol got %q", got)
	}
	if r := request(t, alice, &codec.GroupRemove{GroupMembers: codec.GroupMembers{Req: 4, Group: gid, Users: codec.Users(carol.Welcome.User)}}); r.Type() != codec.TypeOK {
		t.Fatalf("remove: %+v", r)
	}
	alice.SendID(client.NewID(), codec.FlagGroup, gid, []byte("after"), true)
	if got := groupDeliveries(t, bob, gid, 2); got[1] != "after" {
		t.Fatalf("bob got %q", got)
	}
	removed := false
	deadline := time.After(500 * time.Millisecond)
	for done := false; !done; {
		select {
		case f := <-carol.Events():
			switch f := f.(type) {
			case *codec.Deliver:
				t.Fatalf("removed member got %q", f.Body)
			case *codec.GroupEvent:
				removed = removed || f.Kind == codec.GroupRemoved
				carol.Ack(f.Seq, true)
			}
		case <-deadline:
			done = true
		}
	}
	if !removed {
		t.Fatal("carol was not told of her removal")
	}
	// carol can no longer send to it either.
	carol.SendID(client.NewID(), codec.FlagGroup, gid, []byte("still here?"), true)
	if e := next[*codec.Error](t, carol); e.Code != codec.CodeNotMember {
		t.Fatalf("removed member send: %v", e.Code)
	}
	// The last admin cannot leave while others remain.
	if r := request(t, alice, &codec.GroupLeave{GroupRef: codec.GroupRef{Req: 5, Group: gid}}); r.(*codec.Error).Code != codec.CodeLastAdmin {
		t.Fatalf("last admin leaving: %+v", r)
	}
}

// TestGroupBodyStoredOnce checks the body is written once for all members
// and goes once every member has acknowledged it.
func TestGroupBodyStoredOnce(t *testing.T) {
	s := startServer(t, testConfig(t))
	alice := register(t, s, "alice")
	var members []*client.Conn
	for i := 0; i < 5; i++ {
		members = append(members, register(t, s, fmt.Sprintf("member%d", i)))
	}
	gid := createGroup(t, alice, "five", members...)
	for _, m := range members {
		m.Close() // offline: entries stay until they come back
	}
	alice.SendID(client.NewID(), codec.FlagGroup, gid, make([]byte, 1000), true)
	for sent := false; !sent; {
		switch f := (<-alice.Events()).(type) {
		case *codec.Sent:
			sent = true
		case *codec.GroupEvent:
			alice.Ack(f.Seq, true)
		}
	}
	if n, err := store.Count(s.db, []byte{store.PrefixBody}, -1); err != nil || n != 2 {
		t.Fatalf("%d body keys (%v) for one group message, want the body and its count", n, err)
	}
	// Members come back and acknowledge: the body goes.
	for i := range members {
		c := login(t, s, fmt.Sprintf("member%d", i))
		if got := groupDeliveries(t, c, gid, 1); len(got[0]) != 1000 {
			t.Fatalf("member %d got a %d-byte body", i, len(got[0]))
		}
	}
	waitFor(t, func() bool { n, err := store.Count(s.db, []byte{store.PrefixBody}, -1); return err == nil && n == 0 })
}

func TestGroupAndLastSeenSurviveRestart(t *testing.T) {
	cfg := testConfig(t)
	cfg.PresenceInterval = 20 * time.Millisecond
	s1, stop := serve(t, cfg)
	cfg.Addr = s1.Addr().String()
	alice, bob := register(t, s1, "alice"), register(t, s1, "bob")
	gid := createGroup(t, alice, "keep", bob)
	request(t, alice, &codec.GroupRename{Req: 9, Group: gid, Name: []byte("kept")})
	bob.Close()
	waitFor(t, func() bool { _, on := s1.sessions.Lookup(bob.Welcome.User); return !on })
	waitTicks(t, s1, 2) // the presence ticker wrote bob's last seen
	alice.Close()
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	s2 := startServer(t, cfg)
	a := login(t, s2, "alice")
	info, ok := request(t, a, &codec.GroupGet{GroupRef: codec.GroupRef{Req: 1, Group: gid}}).(*codec.GroupInfo)
	if !ok || string(info.Name) != "kept" || len(info.Members) != 2 || info.Members[0].Role != codec.RoleAdmin {
		t.Fatalf("group after restart: %+v", info)
	}
	a.WriteRaw((&codec.Subscribe{Users: codec.Users(bob.Welcome.User)}).Append(nil))
	p := next[*codec.Presence](t, a)
	if p.State != codec.PresenceOffline || p.LastSeen == 0 || time.Since(time.UnixMilli(int64(p.LastSeen))) > time.Minute {
		t.Fatalf("bob's presence after restart: %+v", p)
	}
}

func TestGroupReceiptsReachSender(t *testing.T) {
	s := startServer(t, testConfig(t))
	alice, bob, carol := register(t, s, "alice"), register(t, s, "bob"), register(t, s, "carol")
	gid := createGroup(t, alice, "ticks", bob, carol)
	id := client.NewID()
	alice.SendID(id, codec.FlagGroup, gid, []byte("hello both"), true)
	for _, m := range []*client.Conn{bob, carol} {
		d := next[*codec.Deliver](t, m)
		m.Ack(d.Seq, true)
		m.MarkRead(d.From, gid, d.ID)
	}
	got := map[string]bool{}
	deadline := time.After(10 * time.Second)
	for len(got) < 4 {
		var ev codec.Frame
		select {
		case ev = <-alice.Events():
		case <-deadline:
			t.Fatalf("receipts so far: %v", got)
		}
		switch f := ev.(type) {
		case *codec.Receipt:
			if f.Group != gid || f.IDs.At(0) != id {
				t.Fatalf("receipt %+v", f)
			}
			got[fmt.Sprintf("%d/%v", f.By, f.Kind)] = true
			alice.Ack(f.Seq, true)
		case *codec.GroupEvent:
			alice.Ack(f.Seq, true)
		}
	}
	for _, m := range []*client.Conn{bob, carol} {
		for _, k := range []codec.ReceiptKind{codec.ReceiptDelivered, codec.ReceiptRead} {
			if !got[fmt.Sprintf("%d/%v", m.Welcome.User, k)] {
				t.Fatalf("no %v receipt from %d: %v", k, m.Welcome.User, got)
			}
		}
	}
}
