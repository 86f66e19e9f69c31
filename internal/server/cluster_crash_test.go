package server

import (
	"context"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// restart runs nd again on its data folder and waits until it is ready.
func (nd *clusterNode) restart(t *testing.T, routes string) {
	t.Helper()
	ready := make(chan error, 1)
	nd.start(t, routes, ready)
	select {
	case err := <-ready:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatalf("%s did not come back within a minute", nd.name)
	}
}

// clusterCycles is how many kill -9 cycles the cluster crash test runs:
// 10 in the default suite, CHATD_CLUSTER_CYCLES (say 100) for a long run.
func clusterCycles() int {
	if n, err := strconv.Atoi(os.Getenv("CHATD_CLUSTER_CYCLES")); err == nil && n > 0 {
		return n
	}
	return 10
}

// TestClusterKillNineLosesNothing runs 20 senders and their 20
// recipients on random nodes of a three-node cluster, each pair sending
// across homes, and kill -9s a random node mid-load, cycle after cycle,
// restarting it on its folder. Every message that got SENT must be
// delivered to its recipient, none twice after the client's dedup, in
// the order its sender sent it; users homed on the dead node get their
// backlog when it returns.
func TestClusterKillNineLosesNothing(t *testing.T) {
	t.Parallel() // most of its time is waiting on other processes; -parallel bounds how many run at once
	nodes := startClusterNodes(t, 3)
	var routes []string
	for _, nd := range nodes {
		routes = append(routes, nd.listen)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	tr := startTraffic(t, ctx, 20, "", 20*time.Millisecond, func(int) (*clusterNode, *clusterNode) {
		return nodes[rng.IntN(3)], nodes[rng.IntN(3)]
	})
	for cycle := range clusterCycles() {
		time.Sleep(time.Duration(200+rng.IntN(600)) * time.Millisecond) // load before the kill
		victim := nodes[rng.IntN(3)]
		victim.kill()
		time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		victim.restart(t, strings.Join(routes, ","))
		t.Logf("cycle %d: killed and restarted %s", cycle, victim.name)
	}
	// Every message got SENT (nothing is refused for good here), so every
	// one must arrive.
	tr.check(3*time.Minute, false)
	t.Logf("%d kill -9 cycles", clusterCycles())
}
