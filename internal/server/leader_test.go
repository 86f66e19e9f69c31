package server

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
)

// The node leading the directory's stream is killed (kill -9). Sessions
// on the other nodes keep sending and receiving throughout, and
// directory writes resume: a login elsewhere then kicks the user's older
// session. The test logs how long the directory took to take writes
// again (failover).
func TestClusterDirectoryLeaderKilled(t *testing.T) {
	t.Parallel() // most of its time is waiting on other processes; -parallel bounds how many run at once
	nodes := startClusterNodes(t, 3)
	leader := -1
	deadline := time.Now().Add(30 * time.Second)
	for leader < 0 {
		if time.Now().After(deadline) {
			t.Fatal("no directory leader reported within 30 s")
		}
		st := statusOf(nodes[0])
		for i, nd := range nodes {
			if nd.name == st.DirectoryLeader {
				leader = i
			}
		}
		if leader < 0 {
			time.Sleep(100 * time.Millisecond)
		}
	}
	a, b := (leader+1)%3, (leader+2)%3
	// Users homed on the surviving nodes: two chatting on a, one (x) who
	// logs in on a and then on b.
	var names []string
	for i := 0; len(names) < 3; i++ {
		name := fmt.Sprintf("dl%d", i)
		c, w, err := authOn(t, nodes[a], func(ctx context.Context, c *client.Conn) (codec.Welcome, error) {
			return c.Register(ctx, name, "password1")
		})
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		if h := homeNode(nodes, w.User); h != leader {
			names = append(names, name)
		}
	}
	from, to, x := loginOn(t, nodes[a], names[0]), loginOn(t, nodes[a], names[1]), loginOn(t, nodes[a], names[2])

	killed := time.Now()
	nodes[leader].kill()
	// x logs in on b at once: its claim waits for the directory.
	loginOn(t, nodes[b], names[2])

	// Meanwhile the pair on a keeps chatting, one message every 50 ms.
	kicked := make(chan time.Duration, 1)
	go func() {
		waitKickedWithin(t, x, time.Minute)
		kicked <- time.Since(killed)
	}()
	var failover time.Duration
	sent, got := 0, 0
	duringOutage := 0
	for i := 0; failover == 0 || i < 40; i++ {
		if time.Since(killed) > time.Minute {
			t.Fatal("directory writes did not resume within a minute of the leader's death")
		}
		if _, err := from.Send(to.Welcome.User, []byte(fmt.Sprintf("m%d", i)), true); err != nil {
			t.Fatal(err)
		}
		sent++
		waitFrame(t, to, func(f codec.Frame) bool {
			d, ok := f.(*codec.Deliver)
			if ok {
				to.Ack(d.Seq, true)
			}
			return ok
		})
		got++
		select {
		case failover = <-kicked:
		default:
			if failover == 0 {
				duringOutage++
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if duringOutage == 0 {
		t.Fatal("no message was exchanged while the directory was without a leader")
	}
	t.Logf("directory leader %s killed: the older session was kicked after %s (failover); %d of %d local messages delivered meanwhile",
		nodes[leader].name, failover.Round(time.Millisecond), duringOutage, sent)
}
