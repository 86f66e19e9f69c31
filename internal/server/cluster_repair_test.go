package server

import (
	"testing"
	"time"

	"github.com/chatd/chatd/codec"
)

// TestClusterLostFinalPushRepaired: a push from bob's home to his session
// on the other node is lost (CHATD_TEST_DROP_PUSHES) and no later push
// names it. Before the repair, bob waited for his next login; now the
// home, once his pushes have gone quiet, names the last seq it pushed
// and his session drains it.
func TestClusterLostFinalPushRepaired(t *testing.T) {
	t.Setenv("CHATD_TEST_DROP_PUSHES", "1")
	nodes := startClusterNodes(t, 2)
	ids := registerAll(t, nodes[0], "alice", "bob")
	hb := homeNode(nodes, ids["bob"])
	bob := loginOn(t, nodes[1-hb], "bob")
	alice := loginOn(t, nodes[hb], "alice")
	id := codec.MsgID{7}
	if err := alice.SendID(id, 0, ids["bob"], []byte("the last word"), true); err != nil {
		t.Fatal(err)
	}
	if f, ok := nextFrame(t, alice).(*codec.Sent); !ok || f.ID != id {
		t.Fatalf("alice got %#v, want SENT", f)
	}
	start := time.Now()
	d, ok := nextFrame(t, bob).(*codec.Deliver) // within 5 s: a repair tick is 1 s
	if !ok || d.ID != id {
		t.Fatalf("bob got %#v, want the message whose push was lost", d)
	}
	t.Logf("delivered %v after SENT", time.Since(start).Round(time.Millisecond))
}
