package server

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/chatd/chatd/internal/cluster"
)

// Shards move under load: ten senders each send to their recipient on
// random nodes while the home shard of every sender and every recipient
// moves to another node, one after the other. Every SENT message is
// delivered, none twice after the client's dedup, each sender's in order,
// and every delivered receipt reaches its sender at its new home.
func TestClusterShardMoveUnderLoad(t *testing.T) {
	t.Parallel() // most of its time is waiting on other processes; -parallel bounds how many run at once
	nodes := startClusterNodes(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tr := startTraffic(t, ctx, 10, "m", 10*time.Millisecond, func(i int) (*clusterNode, *clusterNode) {
		return nodes[i%3], nodes[(i+1)%3]
	})
	// Move every user's shard to the next node, under load. A shard moved
	// before (sender and recipient may share one) is found by asking each
	// node until its owner does it.
	for _, p := range tr.pairs {
		for _, u := range []uint64{p.sender.User(), p.recipient.User()} {
			time.Sleep(50 * time.Millisecond) // load between moves
			shard, from := cluster.ShardOf(u), homeNode(nodes, u)
			var why []string
			for _, i := range []int{from, (from + 1) % 3, (from + 2) % 3} {
				resp, err := (&http.Client{Timeout: time.Minute}).PostForm("http://"+nodes[i].admin+"/cluster/move",
					url.Values{"shard": {strconv.Itoa(shard)}, "to": {nodes[(i+1)%3].name}})
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					t.Logf("moved shard %d: %s", shard, body)
					why = nil
					break
				}
				why = append(why, nodes[i].name+": "+string(body))
			}
			if why != nil {
				t.Fatalf("shard %d: no node would move it: %q", shard, why)
			}
		}
	}
	time.Sleep(300 * time.Millisecond) // load after the last move
	tr.check(2*time.Minute, true)
}
