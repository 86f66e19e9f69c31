package server

import (
	"syscall"
	"testing"

	"github.com/chatd/chatd/codec"
)

// TestClusterRemoteSendsBounded: a connection may have at most
// MaxRemoteSends SENDs waiting for another node's answer. With the
// recipient's home stopped, the first two wait and the third is refused
// at once with ERROR 27; once the home answers, its resend is taken.
func TestClusterRemoteSendsBounded(t *testing.T) {
	t.Setenv("CHATD_TEST_MAX_REMOTE_SENDS", "2")
	nodes := startClusterNodes(t, 2)
	ids := registerAll(t, nodes[0], "alice", "bob0", "bob1", "bob2", "bob3", "bob4", "bob5")
	ha := homeNode(nodes, ids["alice"])
	bob := ""
	for _, name := range []string{"bob0", "bob1", "bob2", "bob3", "bob4", "bob5"} {
		if homeNode(nodes, ids[name]) != ha {
			bob = name
			break
		}
	}
	if bob == "" {
		t.Fatal("every name has alice's home")
	}
	alice := loginOn(t, nodes[ha], "alice")
	home := nodes[1-ha].cmd.Process
	if err := home.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			home.Signal(syscall.SIGCONT)
		}
	}
	t.Cleanup(resume)

	msgs := []codec.MsgID{{1}, {2}, {3}}
	for i, id := range msgs {
		if err := alice.SendID(id, 0, ids[bob], []byte{byte(i)}, i == len(msgs)-1); err != nil {
			t.Fatal(err)
		}
	}
	if f := nextFrame(t, alice); !refusedFor(f, codec.CodeBusy, msgs[2]) {
		t.Fatalf("third SEND with two waiting for a stopped home: got %#v, want ERROR 27 for it", f)
	}
	resume()
	for range 2 {
		if f, ok := nextFrame(t, alice).(*codec.Sent); !ok || f.ID != msgs[0] && f.ID != msgs[1] {
			t.Fatalf("after the home resumed: got %#v, want SENT for the first two", f)
		}
	}
	if err := alice.SendID(msgs[2], codec.FlagDup, ids[bob], []byte{2}, true); err != nil {
		t.Fatal(err)
	}
	if f, ok := nextFrame(t, alice).(*codec.Sent); !ok || f.ID != msgs[2] {
		t.Fatalf("resend of the third: got %#v, want SENT", f)
	}
	bc := loginOn(t, nodes[ha], bob)
	for i, want := range msgs {
		d, ok := nextFrame(t, bc).(*codec.Deliver)
		if !ok || d.ID != want {
			t.Fatalf("bob's delivery %d: got %#v, want %v", i, d, want)
		}
		bc.Ack(d.Seq, true)
	}
}
