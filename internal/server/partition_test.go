package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/cluster"
)

// testNet is n network namespaces on one bridge, as ../shared/notes
// describe for partition tests: node i has 10.99.<net>.i, and the test
// (in the root namespace) reaches every node through the bridge, at
// .254. Partition cuts a node off from the other nodes, not from its
// clients.
type testNet struct {
	t      *testing.T
	prefix string
	subnet string // "10.99.N."
	n      int
}

func run(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

var netRuns atomic.Int32

func newTestNet(t *testing.T, n int) *testNet {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a cluster of server processes in network namespaces")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("partition test skipped: nft is not installed (apt-get install nftables)")
	}
	id := os.Getpid() % 200
	nth := netRuns.Add(1) // -count=N runs the test again in this process
	tn := &testNet{t: t, prefix: fmt.Sprintf("cp%d%c", os.Getpid()%100000, 'a'+rune(nth%26)), subnet: fmt.Sprintf("10.99.%d.", (id+int(nth))%200+20), n: n}
	br := tn.prefix + "br"
	if err := run("ip", "link", "add", br, "type", "bridge"); err != nil {
		t.Skipf("partition test skipped: cannot make a bridge here (%v)", err)
	}
	t.Cleanup(func() {
		for i := 1; i <= n; i++ {
			run("ip", "netns", "del", tn.ns(i))
		}
		run("ip", "link", "del", br)
	})
	steps := [][]string{
		{"ip", "addr", "add", tn.subnet + "254/24", "dev", br},
		{"ip", "link", "set", br, "up"},
	}
	for i := 1; i <= n; i++ {
		ns, v := tn.ns(i), fmt.Sprintf("%sv%d", tn.prefix, i)
		if err := run("ip", "netns", "add", ns); err != nil {
			t.Skipf("partition test skipped: ip netns add is not permitted here (%v)", err)
		}
		steps = append(steps,
			[]string{"ip", "link", "add", v, "type", "veth", "peer", "name", v + "b"},
			[]string{"ip", "link", "set", v, "netns", ns},
			[]string{"ip", "link", "set", v + "b", "master", br, "up"},
			[]string{"ip", "-n", ns, "addr", "add", fmt.Sprintf("%s%d/24", tn.subnet, i), "dev", v},
			[]string{"ip", "-n", ns, "link", "set", v, "up"},
			[]string{"ip", "-n", ns, "link", "set", "lo", "up"},
		)
	}
	for _, s := range steps {
		if err := run(s...); err != nil {
			t.Fatal(err)
		}
	}
	return tn
}

func (tn *testNet) ns(i int) string { return fmt.Sprintf("%sn%d", tn.prefix, i) }

// nodes makes the cluster's nodes, one per namespace, on fixed ports
// (each namespace has its own).
func (tn *testNet) nodes() []*clusterNode {
	var nodes []*clusterNode
	logs := newNodeLogs(tn.t)
	for i := 1; i <= tn.n; i++ {
		ip := fmt.Sprintf("%s%d", tn.subnet, i)
		nodes = append(nodes, &clusterNode{name: fmt.Sprintf("n%d", i), addr: ip + ":7400", listen: ip + ":7500",
			admin: ip + ":7600", dir: tn.t.TempDir(), netns: tn.ns(i), logs: logs})
	}
	return nodes
}

// partition drops node i's traffic with the other nodes (nftables in its
// namespace); heal undoes it.
func (tn *testNet) partition(i int) {
	var others []string
	for j := 1; j <= tn.n; j++ {
		if j != i {
			others = append(others, fmt.Sprintf("%s%d", tn.subnet, j))
		}
	}
	set := "{ " + strings.Join(others, ", ") + " }"
	rules := "table inet chatdpart {\n" +
		"  chain in { type filter hook input priority 0; ip saddr " + set + " drop; }\n" +
		"  chain out { type filter hook output priority 0; ip daddr " + set + " drop; }\n}\n"
	cmd := exec.Command("ip", "netns", "exec", tn.ns(i), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		tn.t.Fatalf("partition: %v: %s", err, out)
	}
}

func (tn *testNet) heal(i int) {
	if err := run("ip", "netns", "exec", tn.ns(i), "nft", "delete", "table", "inet", "chatdpart"); err != nil {
		tn.t.Fatal(err)
	}
}

// One node is cut off from the others for 15 s under load from senders
// and recipients on every node, then the partition heals. No message
// that got SENT is lost, none is delivered twice after dedup, each
// sender's arrive in order; and a user who logged in again on the
// majority side during the partition keeps only that session once the
// cut-off node hears of it.
func TestClusterPartitionHeals(t *testing.T) {
	t.Parallel() // most of its time is waiting on other processes; -parallel bounds how many run at once
	tn := newTestNet(t, 3)
	nodes := tn.nodes()
	runNodes(t, nodes)
	const victim = 2 // n3
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// A user homed on the majority side, with a session on the victim.
	var split string
	var splitID uint64
	for i := 0; split == ""; i++ {
		name := fmt.Sprintf("split%d", i)
		c, w, err := authOn(t, nodes[0], func(ctx context.Context, c *client.Conn) (codec.Welcome, error) {
			return c.Register(ctx, name, "password1")
		})
		var e *codec.Error
		if errors.As(err, &e) && e.Code == codec.CodeNameTaken {
			continue // an attempt that answered ERROR 63 was written after all
		}
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		if homeNode(nodes, w.User) != victim {
			split, splitID = name, w.User
		}
	}
	onVictim := loginOn(t, nodes[victim], split)
	tr := startTraffic(t, ctx, 9, "p", 25*time.Millisecond, func(i int) (*clusterNode, *clusterNode) {
		return nodes[i%3], nodes[(i/3+i+1)%3]
	})

	time.Sleep(time.Second) // load before the cut
	tn.partition(victim + 1)
	cut := time.Now()
	// The same user logs in on the majority side: its directory claim is
	// made there (after the majority's own outage), and its kick cannot
	// reach the victim.
	onMajority := loginOn(t, nodes[0], split)
	// The cut is real: the victim hears no other node.
	var last cluster.Status
	for alone := false; !alone; {
		if time.Since(cut) > 12*time.Second {
			out, _ := exec.Command("ip", "netns", "exec", tn.ns(victim+1), "nft", "list", "ruleset").CombinedOutput()
			t.Fatalf("the victim still hears the other nodes 12 s into the partition: %+v\n%s", last, out)
		}
		time.Sleep(200 * time.Millisecond)
		st := statusOf(nodes[victim])
		heard := 0 // the others it hears (its own heartbeats stop too: no quorum to write them)
		for _, n := range st.Nodes {
			if n.Live && n.Name != nodes[victim].name {
				heard++
			}
		}
		alone = len(st.Nodes) == 3 && heard == 0
		last = st
	}
	time.Sleep(15*time.Second - time.Since(cut))
	tn.heal(victim + 1)
	t.Logf("partition of %s healed after %s", nodes[victim].name, time.Since(cut).Round(time.Millisecond))
	if k := waitKickedWithin(t, onVictim, 60*time.Second); k != codec.KickElsewhere {
		t.Fatalf("the victim's session of %s (%d) ended with %v, want KICKED elsewhere", split, splitID, k)
	}
	time.Sleep(2 * time.Second) // load after the heal
	total := tr.check(3*time.Minute, false)
	// The majority side's session is the one left.
	if err := onMajority.Ping(1); err != nil {
		t.Fatalf("the majority side's session of %s is gone: %v", split, err)
	}
	waitFrame(t, onMajority, func(f codec.Frame) bool { _, ok := f.(*codec.Pong); return ok })
	t.Logf("%d messages through a 15 s partition of one node", total)
}

// waitKickedWithin is waitKicked with its own deadline.
func waitKickedWithin(t *testing.T, c *client.Conn, d time.Duration) codec.KickReason {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case f, ok := <-c.Events():
			if !ok {
				t.Fatalf("connection ended without KICKED: %v", c.Err())
			}
			if k, isKick := f.(*codec.Kicked); isKick {
				return k.Reason
			}
		case <-deadline:
			t.Fatalf("no KICKED within %s", d)
		}
	}
}
