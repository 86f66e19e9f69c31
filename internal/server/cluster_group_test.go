package server

import (
	"context"
	"fmt"
	"slices"
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
