package server

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/cluster"
	"github.com/chatd/chatd/internal/store"
	"github.com/cockroachdb/pebble/v2"
)

// A group of 256 whose members are homed on all three nodes and connected
// to all three: created and grown from other nodes than its home, three
// senders on three nodes at once, and every member sees one order. Each
// home stores each body once, whatever its number of members.
func TestClusterGroupAcrossHomes(t *testing.T) {
	t.Parallel() // most of its time is waiting on other processes; -parallel bounds how many run at once
	nodes := startClusterNodes(t, 3)
	const size, senders, each = 256, 3, 20
	conns := make([]*client.Conn, size)
	users := make([]uint64, size)
	var wg sync.WaitGroup
	errs := make(chan error, size)
	slots := make(chan struct{}, 4) // the homes bound concurrent hashing and refuse the rest
	for i := range size {
		wg.Add(1)
		go func() {
			defer wg.Done()
			slots <- struct{}{}
			defer func() { <-slots }()
			c, w, err := authOn(t, nodes[i%3], func(ctx context.Context, c *client.Conn) (codec.Welcome, error) {
				return c.Register(ctx, fmt.Sprintf("member%03d", i), "password1")
			})
			if err != nil {
				errs <- err
				return
			}
			conns[i], users[i] = c, w.User
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	homes := map[int]int{}
	for _, u := range users {
		homes[homeNode(nodes, u)]++
	}
	if len(homes) != 3 {
		t.Fatalf("members' homes: %v, want all three nodes", homes)
	}
	// The creator is on a node that is not its home: the create goes there.
	creator := 0
	for homeNode(nodes, users[creator]) == creator%3 {
		creator++
	}
	var others []uint64
	for i, u := range users {
		if i != creator && i != size-1 {
			others = append(others, u)
		}
	}
	r := request(t, conns[creator], &codec.GroupCreate{Req: 1, Name: []byte("everyone"), Users: codec.Users(others...)})
	info, ok := r.(*codec.GroupInfo)
	if !ok {
		t.Fatalf("create: %+v", r)
	}
	gid := info.Group
	if cluster.ShardOf(gid) != cluster.ShardOf(users[creator]) || len(info.Members) != size-1 {
		t.Fatalf("group %d (shard %d) with %d members; want the creator's shard %d and %d members",
			gid, cluster.ShardOf(gid), len(info.Members), cluster.ShardOf(users[creator]), size-1)
	}
	// A name that is no account is refused, wherever it is homed.
	if r := request(t, conns[creator], &codec.GroupAdd{GroupMembers: codec.GroupMembers{Req: 2, Group: gid, Users: codec.Users(users[1] + 3*4096*1000)}}); !isError(r, codec.CodeInvalidGroup) {
		t.Fatalf("adding a user that does not exist: %+v", r)
	}
	if r := request(t, conns[creator], &codec.GroupAdd{GroupMembers: codec.GroupMembers{Req: 3, Group: gid, Users: codec.Users(users[size-1])}}); !isOK(r) {
		t.Fatalf("add the last member: %+v", r)
	}
	// GROUP_GET and GROUP_LIST from a member on another node than the home.
	asker := (homeNode(nodes, gid) + 1) % 3 // conns[asker] is on node asker%3
	if r, ok := request(t, conns[asker], &codec.GroupGet{GroupRef: codec.GroupRef{Req: 4, Group: gid}}).(*codec.GroupInfo); !ok || len(r.Members) != size {
		t.Fatalf("GROUP_GET: %+v", r)
	}
	if r, ok := request(t, conns[asker], &codec.GroupList{Req: 5}).(*codec.Groups); !ok || len(r.Groups) != 1 || r.Groups[0].Group != gid {
		t.Fatalf("GROUP_LIST: %+v", r)
	}

	// Typing crosses nodes: the home relays it to every member's node.
	typer, watcher := 1, 2 // on nodes 1 and 2
	if err := conns[typer].WriteRaw((&codec.Typing{To: gid, Flags: codec.FlagGroup, State: codec.TypingStarted}).Append(nil)); err != nil {
		t.Fatal(err)
	}
	waitFrame(t, conns[watcher], func(f codec.Frame) bool {
		it, ok := f.(*codec.IsTyping)
		return ok && it.From == users[typer] && it.Group == gid
	})

	// Three senders on three nodes at once.
	var sendWG sync.WaitGroup
	for s := range senders {
		sendWG.Add(1)
		go func() {
			defer sendWG.Done()
			for i := range each {
				if err := conns[s].SendID(client.NewID(), codec.FlagGroup, gid, []byte(fmt.Sprintf("s%d-%02d", s, i)), i == each-1); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	sendWG.Wait()

	// Every member gets every message but its own, in one order; the
	// senders get SENT for all of theirs.
	got := make([][]string, size)
	var readWG sync.WaitGroup
	for i, c := range conns {
		readWG.Add(1)
		go func() {
			defer readWG.Done()
			want := senders * each
			if i < senders {
				want -= each
			}
			sents := 0
			deadline := time.After(60 * time.Second)
			for len(got[i]) < want || i < senders && sents < each {
				select {
				case f, ok := <-c.Events():
					if !ok {
						t.Errorf("member %d's connection ended: %v", i, c.Err())
						return
					}
					switch f := f.(type) {
					case *codec.Deliver:
						if f.Group == gid {
							got[i] = append(got[i], string(f.Body))
						}
					case *codec.Sent:
						sents++
					case *codec.Error:
						t.Errorf("member %d: %v", i, f)
						return
					}
				case <-deadline:
					t.Errorf("member %d (node %d, home %d): %d of %d messages, %d SENT", i, i%3, homeNode(nodes, users[i]), len(got[i]), want, sents)
					return
				}
			}
		}()
	}
	readWG.Wait()
	if t.Failed() {
		t.FailNow()
	}
	order := got[senders] // a member that sent nothing
	for i, g := range got {
		var want []string
		for _, b := range order {
			if i >= senders || b[:2] != fmt.Sprintf("s%d", i) {
				want = append(want, b)
			}
		}
		if !slices.Equal(g, want) {
			t.Fatalf("member %d saw another order:\n%v\nwant\n%v", i, g, want)
		}
	}

	// Nobody acknowledged: each home holds each body once.
	for _, nd := range nodes {
		nd.kill()
		db, err := store.Open(nd.dir, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		bodies := countBodies(t, db)
		db.Close()
		if bodies != senders*each {
			t.Errorf("%s holds %d group bodies, want %d: one per message", nd.name, bodies, senders*each)
		}
	}
}

func isOK(f codec.Frame) bool { _, ok := f.(*codec.OK); return ok }

func isError(f codec.Frame, code codec.Code) bool {
	e, ok := f.(*codec.Error)
	return ok && e.Code == code
}

// waitFrame reads c's frames until match accepts one.
func waitFrame(t *testing.T, c *client.Conn, match func(codec.Frame) bool) {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case f, ok := <-c.Events():
			if !ok {
				t.Fatalf("connection ended: %v", c.Err())
			}
			if match(f) {
				return
			}
		case <-deadline:
			t.Fatal("the frame never came")
		}
	}
}

// countBodies counts the stored group message bodies ('b' | ref | 0).
func countBodies(t *testing.T, db *pebble.DB) int {
	t.Helper()
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{store.PrefixBody}, UpperBound: []byte{store.PrefixBody + 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	n := 0
	for it.First(); it.Valid(); it.Next() {
		if k := it.Key(); k[len(k)-1] == 0 {
			n++
		}
	}
	return n
}

// A group message for a member whose home is down is promised by the
// group's home (SENT), kept in its outbox through a kill -9 of the group's
// home too, and stored at the member's home once both are back, in order.
func TestClusterGroupOutboxSurvivesDeadHomes(t *testing.T) {
	t.Parallel() // most of its time is waiting on other processes; -parallel bounds how many run at once
	nodes := startClusterNodes(t, 3)
	var routes []string
	for _, nd := range nodes {
		routes = append(routes, nd.listen)
	}
	// A sender, and a member homed elsewhere than the sender (whose
	// home is the group's).
	register := func(name string) (*client.Conn, uint64) {
		c, w, err := authOn(t, nodes[0], func(ctx context.Context, c *client.Conn) (codec.Welcome, error) {
			return c.Register(ctx, name, "password1")
		})
		if err != nil {
			t.Fatal(err)
		}
		return c, w.User
	}
	sender, senderID := register("sender")
	h := homeNode(nodes, senderID)
	var member uint64
	var memberName string
	for i := 0; member == 0; i++ {
		name := fmt.Sprintf("member%d", i)
		c, u := register(name)
		c.Close()
		if homeNode(nodes, u) != h {
			member, memberName = u, name
		}
	}
	m := homeNode(nodes, member)
	s := 3 - h - m // the node that stays up: the sender's session is there
	sender.Close()
	sender, _, err := authOn(t, nodes[s], func(ctx context.Context, c *client.Conn) (codec.Welcome, error) {
		return c.Login(ctx, "sender", "password1")
	})
	if err != nil {
		t.Fatal(err)
	}
	r := request(t, sender, &codec.GroupCreate{Req: 1, Name: []byte("g"), Users: codec.Users(member)})
	info, ok := r.(*codec.GroupInfo)
	if !ok {
		t.Fatalf("create: %+v", r)
	}

	nodes[m].kill()
	const n = 30
	for i := range n {
		if err := sender.SendID(client.NewID(), codec.FlagGroup, info.Group, []byte(fmt.Sprintf("g%02d", i)), i == n-1); err != nil {
			t.Fatal(err)
		}
	}
	for sents := 0; sents < n; {
		select {
		case f := <-sender.Events():
			switch f := f.(type) {
			case *codec.Sent:
				sents++
			case *codec.Error:
				t.Fatalf("send with the member's home down: %v", f)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%d of %d SENT with the member's home down", sents, n)
		}
	}
	nodes[h].kill() // the outbox is all that remembers the member's share
	rs := strings.Join(routes, ",")
	nodes[h].restart(t, rs) // with the third node: a quorum again
	nodes[m].restart(t, rs)
	c, _, err := authOn(t, nodes[m], func(ctx context.Context, c *client.Conn) (codec.Welcome, error) {
		return c.Login(ctx, memberName, "password1")
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	deadline := time.After(60 * time.Second)
	for len(got) < n {
		select {
		case f, ok := <-c.Events():
			if !ok {
				t.Fatalf("the member's connection ended: %v", c.Err())
			}
			if d, isDeliver := f.(*codec.Deliver); isDeliver && d.Group == info.Group {
				if want := fmt.Sprintf("g%02d", len(got)); string(d.Body) != want {
					t.Fatalf("delivery %d: %q, want %q", len(got), d.Body, want)
				}
				got = append(got, string(d.Body))
				c.Ack(d.Seq, true)
			}
		case <-deadline:
			t.Fatalf("the member got %d of %d after both homes came back", len(got), n)
		}
	}
}
