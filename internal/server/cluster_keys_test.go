package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/cluster"
)

// registerAll registers each name (password "password1") at nd and
// returns their ids.
func registerAll(t *testing.T, nd *clusterNode, names ...string) map[string]uint64 {
	t.Helper()
	ids := map[string]uint64{}
	for _, name := range names {
		c, w, err := authOn(t, nd, func(ctx context.Context, c *client.Conn) (codec.Welcome, error) {
			return c.Register(ctx, name, "password1")
		})
		if err != nil {
			t.Fatalf("register %s: %v", name, err)
		}
		c.Close()
		ids[name] = w.User
	}
	return ids
}

// pickHomed returns the first of names whose home (in a fresh
// three-node cluster) is not in avoid.
func pickHomed(t *testing.T, nodes []*clusterNode, ids map[string]uint64, names []string, avoid ...int) string {
	t.Helper()
	for _, name := range names {
		ok := true
		for _, a := range avoid {
			ok = ok && homeNode(nodes, ids[name]) != a
		}
		if ok {
			return name
		}
	}
	t.Fatalf("no name homed outside %v", avoid)
	return ""
}

// otherThan is the first node index of three that is none of not.
func otherThan(not ...int) int {
	for i := range 3 {
		free := true
		for _, n := range not {
			free = free && n != i
		}
		if free {
			return i
		}
	}
	return -1
}

// TestClusterKeysAcrossNodes: a device's keys live at its user's home,
// whatever node its owner and its fetchers are connected to. alice
// uploads on a node that is not her home, bob fetches on the third node;
// the fetch limit counts bob's fetches on two nodes together; KEYS_LOW
// reaches alice's session away from home, and her next login on another
// node.
func TestClusterKeysAcrossNodes(t *testing.T) {
	nodes := startClusterNodes(t, 3)
	pool := []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"}
	ids := registerAll(t, nodes[0], pool...)
	aliceName := pool[0]
	ha := homeNode(nodes, ids[aliceName])
	bobName := pickHomed(t, nodes, ids, pool[1:], ha) // not at her home, so that KEYS_LOW crosses nodes
	na := otherThan(ha)                               // alice's node: not her home
	nb := otherThan(ha, na)                           // bob's: the third node
	t.Logf("alice home n%d on n%d; bob home n%d on n%d", ha+1, na+1, homeNode(nodes, ids[bobName])+1, nb+1)

	alice := loginOn(t, nodes[na], aliceName)
	d, counts := uploadKeys(t, alice, 11, 4)
	if counts.EC != 11 || counts.KEM != 4 {
		t.Fatalf("counts after upload: %+v", counts)
	}
	bob := loginOn(t, nodes[nb], bobName)
	seen := map[uint32]bool{}
	fetch := func(c *client.Conn) []codec.Bundle {
		t.Helper()
		bs, err := c.FetchKeys(ctx10(t), ids[aliceName], 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(bs) != 1 || bs[0].Identity != d.IdentityKey() {
			t.Fatalf("bundles %+v: not alice's keys", bs)
		}
		if err := client.VerifyBundle(&bs[0]); err != nil {
			t.Fatal(err)
		}
		if bs[0].EC != nil {
			if seen[bs[0].EC.ID] || d.EC[bs[0].EC.ID] == nil {
				t.Fatalf("EC prekey %d handed out twice or not alice's", bs[0].EC.ID)
			}
			seen[bs[0].EC.ID] = true
		}
		return bs
	}
	fetch(bob)
	if c, err := alice.KeyCounts(ctx10(t)); err != nil || c.EC != 10 || c.KEM != 3 {
		t.Fatalf("alice's counts after one fetch on another node: %+v, %v", c, err)
	}
	if ok, err := alice.CheckKeys(ctx10(t), d.Digest()); err != nil || !ok {
		t.Fatalf("KEYS_CHECK: %v, %v", ok, err)
	}
	// The second fetch takes alice below the thresholds (10 EC, 3 KEM):
	// KEYS_LOW reaches her session, which is not at her home.
	fetch(bob)
	if low := until[*codec.KeysLow](t, alice); *low != (codec.KeysLow{Device: 1, EC: 9, KEM: 2}) {
		t.Fatalf("KEYS_LOW %+v", low)
	}
	// And again at her next login, on another node that is not her home.
	alice.Close()
	alice = loginOn(t, nodes[nb], aliceName)
	if low := until[*codec.KeysLow](t, alice); *low != (codec.KeysLow{Device: 1, EC: 9, KEM: 2}) {
		t.Fatalf("KEYS_LOW at login: %+v", low)
	}

	// The limit (10 per pair by default) counts at alice's home: 3 more
	// fetches from n%d, then 5 from bob's session on alice's first node.
	for range 3 {
		fetch(bob)
	}
	bob.Close()
	bob = loginOn(t, nodes[na], bobName)
	for range 5 {
		fetch(bob)
	}
	_, err := bob.FetchKeys(ctx10(t), ids[aliceName], 0)
	if codeOf(err) != codec.CodeFetchLimited {
		t.Fatalf("11th fetch, split over two nodes: %v, want ERROR 83", err)
	}
	if len(seen) != 10 {
		t.Fatalf("%d distinct EC prekeys in 10 fetches", len(seen))
	}
}

// TestClusterKeysExactlyOnce: fetchers on all three nodes take one
// user's keys at once; each one-time key goes out exactly once, then
// the last-resort key.
func TestClusterKeysExactlyOnce(t *testing.T) {
	nodes := startClusterNodes(t, 3)
	const fetchers, each, ec, kem = 9, 5, 30, 6
	names := []string{"alice"}
	for i := range fetchers {
		names = append(names, fmt.Sprintf("fetcher%d", i))
	}
	ids := registerAll(t, nodes[0], names...)
	ha := homeNode(nodes, ids["alice"])
	alice := loginOn(t, nodes[otherThan(ha)], "alice")
	d, _ := uploadKeys(t, alice, ec, kem)

	conns := make([]*client.Conn, fetchers)
	for i := range conns {
		conns[i] = loginOn(t, nodes[i%3], names[i+1])
	}
	fetchAllOnce(t, conns, ids["alice"], d, each, ec, kem)
}

// TestClusterIdentityChanged: alice's new identity key reaches, across
// nodes, bob who fetched her keys and carol who shares a group with her
// (homed at carol's home, not alice's), each connected away from their
// home; dave, offline at the time, hears it at his next login on a node
// that is not his home, and only once; erin hears nothing.
func TestClusterIdentityChanged(t *testing.T) {
	nodes := startClusterNodes(t, 3)
	pool := []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor"}
	ids := registerAll(t, nodes[0], pool...)
	alice := pool[0]
	ha := homeNode(nodes, ids[alice])
	var others []string // homed away from alice
	for _, n := range pool[1:] {
		if homeNode(nodes, ids[n]) != ha {
			others = append(others, n)
		}
	}
	if len(others) < 4 {
		t.Fatalf("only %d names homed away from alice", len(others))
	}
	bob, carol, dave, erin := others[0], others[1], others[2], others[3]
	on := func(name string) *client.Conn { // a session away from name's home and from alice's
		return loginOn(t, nodes[otherThan(homeNode(nodes, ids[name]), ha)], name)
	}
	a := loginOn(t, nodes[otherThan(ha)], alice)
	uploadKeys(t, a, 5, 2)
	b, c, dv, e := on(bob), on(carol), on(dave), on(erin)
	g := createGroup(t, c, "team", a)
	if homeNode(nodes, g) == ha {
		t.Fatalf("the group is homed at alice's home")
	}
	for _, x := range []*client.Conn{b, dv} {
		if _, err := x.FetchKeys(ctx10(t), ids[alice], 0); err != nil {
			t.Fatal(err)
		}
	}
	// erin watches dave's presence: offline means his home no longer has
	// his session, so the notice must wait for his next login.
	if err := e.Subscribe(ids[dave]); err != nil {
		t.Fatal(err)
	}
	daveIs := func(want codec.PresenceState) {
		t.Helper()
		waitFrame(t, e, func(f codec.Frame) bool {
			if _, told := f.(*codec.IdentityChanged); told {
				t.Errorf("erin got %+v", f)
			}
			p, ok := f.(*codec.Presence)
			return ok && p.User == ids[dave] && p.State == want
		})
	}
	daveIs(codec.PresenceOnline)
	dv.Close()
	daveIs(codec.PresenceOffline)

	uploadKeys(t, a, 0, 0) // a new DeviceKeys: a new identity
	want := codec.IdentityChanged{User: ids[alice], Device: 1}
	for name, x := range map[string]*client.Conn{"bob": b, "carol": c} {
		if got := until[*codec.IdentityChanged](t, x); *got != want {
			t.Fatalf("%s got %+v", name, got)
		}
	}
	d2 := on(dave)
	if got := until[*codec.IdentityChanged](t, d2); *got != want {
		t.Fatalf("dave at login got %+v", got)
	}
	// The notice is dropped at dave's home on his lane before this
	// request's answer (ERROR 82: dave has no keys).
	if _, err := d2.KeyCounts(ctx10(t)); codeOf(err) != codec.CodeNoKeys {
		t.Fatalf("dave's KEYS_COUNT: %v", err)
	}
	d2.Close()
	daveIs(codec.PresenceOffline)
	d3 := on(dave)
	for _, f := range quiet(t, d3, time.Second) {
		if _, again := f.(*codec.IdentityChanged); again {
			t.Fatal("dave was told twice")
		}
	}
	for _, f := range quiet(t, e, 300*time.Millisecond) {
		if _, got := f.(*codec.IdentityChanged); got {
			t.Fatalf("erin got %+v", f)
		}
	}
}

// quiet returns the frames c gets within d (absence has no event to
// wait for), failing if the connection ends.
func quiet(t *testing.T, c *client.Conn, d time.Duration) []codec.Frame {
	t.Helper()
	var got []codec.Frame
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case f, ok := <-c.Events():
			if !ok {
				t.Fatalf("connection ended: %v", c.Err())
			}
			got = append(got, f)
		case <-timer.C:
			return got
		}
	}
}

// TestClusterKeysMoveWithShard: a shard move takes its users' prekeys
// (and who fetched them) to the new home: fetches there hand out the
// keys not yet taken, never one taken before the move.
func TestClusterKeysMoveWithShard(t *testing.T) {
	nodes := startClusterNodes(t, 3)
	ids := registerAll(t, nodes[0], "alice", "bob")
	ha := homeNode(nodes, ids["alice"])
	a := loginOn(t, nodes[otherThan(ha)], "alice")
	d, _ := uploadKeys(t, a, 6, 3)
	b := loginOn(t, nodes[otherThan(ha)], "bob")
	seen := map[uint32]bool{}
	fetch := func() {
		t.Helper()
		var bs []codec.Bundle
		var err error
		// ERROR 63 while the shard is frozen or the map not yet seen.
		waitFor(t, func() bool {
			bs, err = b.FetchKeys(ctx10(t), ids["alice"], 0)
			return codeOf(err) != codec.CodeUnavailable
		})
		if err != nil {
			t.Fatal(err)
		}
		if bs[0].EC == nil || seen[bs[0].EC.ID] || d.EC[bs[0].EC.ID] == nil {
			t.Fatalf("EC prekey %+v missing, handed out twice or not alice's", bs[0].EC)
		}
		seen[bs[0].EC.ID] = true
	}
	for range 3 {
		fetch()
	}
	to := otherThan(ha, otherThan(ha)) // the node that is neither alice's home nor her session's
	moveShard(t, nodes[ha], cluster.ShardOf(ids["alice"]), nodes[to].name)
	for range 3 {
		fetch()
	}
	c, err := a.KeyCounts(ctx10(t))
	for codeOf(err) == codec.CodeUnavailable { // alice's session closes on the move (GOAWAY moved)
		a.Close()
		a = loginOn(t, nodes[otherThan(to)], "alice")
		c, err = a.KeyCounts(ctx10(t))
	}
	if err != nil || c.EC != 0 || c.KEM != 0 {
		t.Fatalf("alice's counts at the new home: %+v, %v", c, err)
	}
}

// moveShard moves shard from its owner nd to node to, asking again while
// the owner refuses for now.
func moveShard(t *testing.T, nd *clusterNode, shard int, to string) {
	t.Helper()
	var last string
	ok := poll(time.Minute, func() bool {
		resp, err := (&http.Client{Timeout: time.Minute}).PostForm("http://"+nd.admin+"/cluster/move",
			url.Values{"shard": {strconv.Itoa(shard)}, "to": {to}})
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		last = string(body)
		return resp.StatusCode == http.StatusOK
	})
	if !ok {
		t.Fatalf("shard %d not moved to %s: %s", shard, to, last)
	}
}
