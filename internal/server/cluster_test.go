package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/account"
	"github.com/chatd/chatd/internal/cluster"
)

// clusterNode is a chatd node run as a child process of the test.
type clusterNode struct {
	name, addr, listen, admin, dir string
	netns                          string    // run in this network namespace (partition tests)
	logs                           *nodeLogs // where each start writes its log (nil: nowhere)
	cmd                            *exec.Cmd
}

// freeOn returns a free port's address on ip.
func freeOn(t *testing.T, ip string) string {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Skipf("cannot listen on %s (%v): the cluster tests need 127.0.0.2-4", ip, err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startClusterNodes starts n nodes as processes on 127.0.0.2.. (each its
// own loopback address, as in the README's three-node example) and waits
// until every one has JetStream; they are killed when the test ends.
func startClusterNodes(t *testing.T, n int) []*clusterNode {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a cluster of server processes")
	}
	nodes := make([]*clusterNode, n)
	logs := newNodeLogs(t)
	// A free port is closed before its node listens on it: a test running
	// meanwhile may take it. Then the cluster starts again on others.
	for try := 0; ; try++ {
		for i := range nodes {
			ip := fmt.Sprintf("127.0.0.%d", i+2)
			nodes[i] = &clusterNode{name: fmt.Sprintf("n%d", i+1), addr: freeOn(t, ip), listen: freeOn(t, ip), admin: freeOn(t, ip), dir: t.TempDir(), logs: logs}
		}
		err := tryRunNodes(t, nodes)
		if err == nil {
			return nodes
		}
		for _, nd := range nodes {
			nd.kill()
		}
		if try == 2 || !strings.Contains(err.Error(), "address already in use") {
			t.Fatal(err)
		}
		t.Logf("starting the cluster again on other ports: %v", err)
	}
}

// runNodes starts nodes as one cluster and waits until every one is
// ready; they are killed when the test ends.
func runNodes(t *testing.T, nodes []*clusterNode) {
	t.Helper()
	if err := tryRunNodes(t, nodes); err != nil {
		t.Fatal(err)
	}
}

// tryRunNodes is runNodes returning the first node's failure to start.
func tryRunNodes(t *testing.T, nodes []*clusterNode) error {
	t.Helper()
	var routes []string
	for _, nd := range nodes {
		routes = append(routes, nd.listen)
	}
	ready := make(chan error, len(nodes))
	for _, nd := range nodes {
		nd.start(t, strings.Join(routes, ","), ready)
	}
	t.Cleanup(func() {
		for _, nd := range nodes {
			if t.Failed() {
				nd.dumpStacks()
			}
			nd.kill()
		}
	})
	for range nodes {
		if err := <-ready; err != nil {
			return err
		}
	}
	return nil
}

func (nd *clusterNode) start(t *testing.T, routes string, ready chan<- error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	if nd.netns != "" {
		cmd = exec.Command("ip", "netns", "exec", nd.netns, os.Args[0], "-test.run=^$") // ip execs it: one process
	}
	cmd.Env = append(os.Environ(), "CHATD_TEST_CHILD=serve", "CHATD_TEST_ADDR="+nd.addr, "CHATD_TEST_DATA="+nd.dir,
		"CHATD_TEST_NODE="+nd.name, "CHATD_TEST_CLUSTER_LISTEN="+nd.listen, "CHATD_TEST_ROUTES="+routes, "CHATD_TEST_ADMIN="+nd.admin)
	cmd.Stderr = os.Stderr
	if nd.logs != nil {
		log := nd.logs.next(nd.name)
		cmd.Env = append(cmd.Env, "CHATD_TEST_LOG="+log, "GOTRACEBACK=all")
		// Its stderr (a panic, or the stacks dumpStacks asks for) goes
		// beside its log, which is kept when the test fails.
		f, err := os.Create(strings.TrimSuffix(log, ".log") + ".stderr")
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close() // the child has its own copy once started
		cmd.Stderr = f
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	nd.cmd = cmd
	go func() {
		line, err := bufio.NewReader(out).ReadString('\n')
		if err == nil && strings.TrimSpace(line) != "ready" {
			err = fmt.Errorf("node %s: %q", nd.name, line)
		}
		ready <- err
	}()
}

// dumpStacks has a node still running write every goroutine's stack to
// its stderr file (SIGQUIT) and waits until it has exited, at most 10 s:
// a failed test keeps how each node was stuck.
func (nd *clusterNode) dumpStacks() {
	if nd.cmd == nil || nd.cmd.Process == nil || nd.logs == nil {
		return
	}
	if nd.cmd.Process.Signal(syscall.SIGQUIT) != nil {
		return
	}
	exited := make(chan struct{})
	go func() {
		nd.cmd.Wait()
		close(exited)
	}()
	select {
	case <-exited:
		nd.cmd = nil
	case <-time.After(10 * time.Second):
		nd.cmd.Process.Kill()
		<-exited
		nd.cmd = nil
	}
}

func (nd *clusterNode) kill() {
	if nd.cmd != nil && nd.cmd.Process != nil {
		nd.cmd.Process.Kill()
		nd.cmd.Wait()
		nd.cmd = nil
	}
}

// authOn dials nd and authenticates with do, retrying while the cluster
// answers ERROR 63 (no shard map yet: it is made once every node is live).
func authOn(t *testing.T, nd *clusterNode, do func(context.Context, *client.Conn) (codec.Welcome, error)) (*client.Conn, codec.Welcome, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		conn, err := client.Dial(ctx, nd.addr)
		if err != nil {
			t.Fatal(err)
		}
		w, err := do(ctx, conn)
		var e *codec.Error
		if errors.As(err, &e) && e.Code == codec.CodeUnavailable && ctx.Err() == nil {
			conn.Close()
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if err != nil {
			conn.Close()
			return nil, w, err
		}
		t.Cleanup(func() { conn.Close() })
		return conn, w, nil
	}
}

// Accounts live at their home node, and a client may log in at any node:
// REGISTER, LOGIN, RESUME and LOOKUP reach the home, and one user keeps
// one live session across the cluster.
func TestClusterLoginAnywhereOneSession(t *testing.T) {
	nodes := startClusterNodes(t, 3)
	users := map[string]uint64{}
	var tokens = map[string]codec.Token{}
	for i, name := range []string{"alice", "bob", "carol"} {
		_, w, err := authOn(t, nodes[i], func(ctx context.Context, c *client.Conn) (codec.Welcome, error) {
			return c.Register(ctx, name, "password1")
		})
		if err != nil {
			t.Fatalf("register %s at %s: %v", name, nodes[i].name, err)
		}
		if cluster.ShardOf(w.User) != account.NameShard([]byte(name)) {
			t.Fatalf("%s got id %d outside its name's shard %d", name, w.User, account.NameShard([]byte(name)))
		}
		users[name], tokens[name] = w.User, w.Token
	}
	// A taken name is taken wherever the REGISTER arrives.
	for _, nd := range nodes {
		_, _, err := authOn(t, nd, func(ctx context.Context, c *client.Conn) (codec.Welcome, error) {
			return c.Register(ctx, "alice", "password2")
		})
		var e *codec.Error
		if !errors.As(err, &e) || e.Code != codec.CodeNameTaken {
			t.Fatalf("second alice at %s: %v, want name taken", nd.name, err)
		}
		_, _, err = authOn(t, nd, func(ctx context.Context, c *client.Conn) (codec.Welcome, error) {
			return c.Login(ctx, "bob", "wrong-password")
		})
		if !errors.As(err, &e) || e.Code != codec.CodeWrongPassword {
			t.Fatalf("bob's wrong password at %s: %v", nd.name, err)
		}
	}
	// alice on n3, then on n2: n3's session is kicked.
	first, w, err := authOn(t, nodes[2], func(ctx context.Context, c *client.Conn) (codec.Welcome, error) {
		return c.Login(ctx, "alice", "password1")
	})
	if err != nil || w.User != users["alice"] {
		t.Fatalf("alice at n3: %+v, %v", w, err)
	}
	if _, w, err = authOn(t, nodes[1], func(ctx context.Context, c *client.Conn) (codec.Welcome, error) {
		return c.Resume(ctx, tokens["alice"])
	}); err != nil || w.User != users["alice"] {
		t.Fatalf("alice resumes at n2: %+v, %v", w, err)
	}
	if k := waitKicked(t, first); k != codec.KickElsewhere {
		t.Fatalf("the session on n3 ended with %v, want KICKED elsewhere", k)
	}
	// LOOKUP from any node reaches the name's home.
	c, _, err := authOn(t, nodes[0], func(ctx context.Context, c *client.Conn) (codec.Welcome, error) {
		return c.Login(ctx, "carol", "password1")
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for name, id := range users {
		got, err := c.LookupName(ctx, name)
		if err != nil || got != id {
			t.Fatalf("lookup %s from n1: %d, %v; want %d", name, got, err, id)
		}
		back, err := c.LookupUser(ctx, id)
		if err != nil || back != name {
			t.Fatalf("lookup %d from n1: %q, %v", id, back, err)
		}
	}
}

// waitKicked waits for c's KICKED frame and returns its reason.
func waitKicked(t *testing.T, c *client.Conn) codec.KickReason {
	t.Helper()
	return waitKickedWithin(t, c, 15*time.Second)
}

// homeNode is the node of a three-node test cluster that owns id's home
// shard: the first shard map spreads shards round-robin over the sorted
// node names (cluster.initialMap).
func homeNode(nodes []*clusterNode, id uint64) int { return cluster.ShardOf(id) % len(nodes) }

// A 1:1 conversation between two users whose sessions are on nodes that
// are neither's home: SENT after the recipient's home stored each
// message, delivery in order, delivered and read receipts back to the
// sender, and a backlog drained from the home by a session on a third
// node.
func TestClusterCrossNodeConversation(t *testing.T) {
	nodes := startClusterNodes(t, 3)
	ids := map[string]uint64{}
	// bob is the first of a few names whose home is not alice's, so that
	// receipts go from one home to another.
	bobName := ""
	for _, name := range []string{"alice", "bob0", "bob1", "bob2", "bob3", "bob4", "bob5"} {
		_, w, err := authOn(t, nodes[0], func(ctx context.Context, c *client.Conn) (codec.Welcome, error) {
			return c.Register(ctx, name, "password1")
		})
		if err != nil {
			t.Fatal(err)
		}
		ids[name] = w.User
		if name != "alice" && bobName == "" && homeNode(nodes, w.User) != homeNode(nodes, ids["alice"]) {
			bobName = name
			ids["bob"] = w.User
		}
	}
	if bobName == "" {
		t.Fatal("every name has alice's home")
	}
	// Sessions away from home: alice on a node that is not hers, bob on
	// one that is neither his nor alice's.
	ha, hb := homeNode(nodes, ids["alice"]), homeNode(nodes, ids["bob"])
	na := (ha + 1) % 3
	nb := (hb + 1) % 3
	if nb == na {
		nb = (hb + 2) % 3
	}
	t.Logf("alice home n%d on n%d, bob home n%d on n%d", ha+1, na+1, hb+1, nb+1)
	alice, bob := loginOn(t, nodes[na], "alice"), loginOn(t, nodes[nb], bobName)

	const n = 200
	sent := make([]codec.MsgID, n)
	for i := range n {
		id, err := alice.Send(ids["bob"], []byte(fmt.Sprintf("m%03d", i)), i%20 == 19)
		if err != nil {
			t.Fatal(err)
		}
		sent[i] = id
	}
	alice.Flush()

	// bob gets all n in order and acknowledges them.
	var got []codec.MsgID
	deadline := time.After(30 * time.Second)
	for len(got) < n {
		select {
		case f, ok := <-bob.Events():
			if !ok {
				t.Fatalf("bob's connection ended: %v", bob.Err())
			}
			if d, isDeliver := f.(*codec.Deliver); isDeliver {
				if want := fmt.Sprintf("m%03d", len(got)); string(d.Body) != want || d.From != ids["alice"] {
					t.Fatalf("delivery %d: %q from %d, want %q from alice", len(got), d.Body, d.From, want)
				}
				got = append(got, d.ID)
				bob.Ack(d.Seq, true)
			}
		case <-deadline:
			t.Fatalf("bob got %d of %d", len(got), n)
		}
	}
	if err := bob.MarkRead(ids["alice"], 0, got[:10]...); err != nil {
		t.Fatal(err)
	}

	// alice: n SENT in order, then delivered receipts for all n and a
	// read receipt for the first ten.
	var sents int
	delivered, read := map[codec.MsgID]bool{}, map[codec.MsgID]bool{}
	deadline = time.After(30 * time.Second)
	for sents < n || len(delivered) < n || len(read) < 10 {
		select {
		case f, ok := <-alice.Events():
			if !ok {
				t.Fatalf("alice's connection ended: %v", alice.Err())
			}
			switch f := f.(type) {
			case *codec.Sent:
				if f.ID != sent[sents] {
					t.Fatalf("SENT %d is for another message: out of order", sents)
				}
				sents++
			case *codec.Receipt:
				for i := 0; i < f.IDs.Len(); i++ {
					if f.Kind == codec.ReceiptRead {
						read[f.IDs.At(i)] = true
					} else {
						delivered[f.IDs.At(i)] = true
					}
				}
				alice.Ack(f.Seq, true)
			case *codec.Error:
				t.Fatalf("alice got %v", f)
			}
		case <-deadline:
			t.Fatalf("alice got %d SENT, %d delivered, %d read", sents, len(delivered), len(read))
		}
	}

	// Forwarded SENDs are timed where the sender is, like local ones.
	fams := scrape(t, nodes[na].admin)
	if hb != na {
		if got := histCount(t, fams, "chatd_send_to_sent_seconds"); got < n {
			t.Errorf("n%d timed %d SEND-to-SENT, want at least the %d forwarded", na+1, got, n)
		}
	}
	// A node serves every cluster metric the dashboard and alerts may use.
	served := seriesNames(fams)
	for name := range clusterMetricNames() {
		if !served[name] {
			t.Errorf("n%d does not serve %s", na+1, name)
		}
	}

	// Typing crosses nodes too (through alice's home, which knows where
	// her session is).
	if err := bob.Typing(ids["alice"], true); err != nil {
		t.Fatal(err)
	}
	for typing := false; !typing; {
		select {
		case f := <-alice.Events():
			if it, ok := f.(*codec.IsTyping); ok && it.From == ids["bob"] {
				typing = true
			}
		case <-time.After(10 * time.Second):
			t.Fatal("alice never saw bob typing")
		}
	}

	// bob leaves; alice sends more; bob comes back on the third node and
	// drains them from his home.
	bob.Close()
	for i := range 20 {
		if _, err := alice.Send(ids["bob"], []byte(fmt.Sprintf("later%02d", i)), i == 19); err != nil {
			t.Fatal(err)
		}
	}
	for sents < n+20 {
		select {
		case f := <-alice.Events():
			if _, ok := f.(*codec.Sent); ok {
				sents++
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%d of 20 offline sends got SENT", sents-n)
		}
	}
	third := 3 - na - nb // the node neither used
	bob = loginOn(t, nodes[third], bobName)
	for i := 0; i < 20; {
		select {
		case f, ok := <-bob.Events():
			if !ok {
				t.Fatalf("bob's connection ended: %v", bob.Err())
			}
			if d, isDeliver := f.(*codec.Deliver); isDeliver {
				if want := fmt.Sprintf("later%02d", i); string(d.Body) != want {
					t.Fatalf("backlog %d: %q, want %q", i, d.Body, want)
				}
				bob.Ack(d.Seq, true)
				i++
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("bob drained %d of 20 from his home", i)
		}
	}
}
