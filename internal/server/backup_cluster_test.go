package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
)

// TestClusterNodeRestoredFromBackup backs up the home node of an offline
// recipient, kills it, puts the backup in place of its data folder (which
// has no NATS store) and restarts it: the node must rejoin the cluster
// from its peers' JetStream state and deliver every message acknowledged
// before the backup, also one sent from another node afterwards.
func TestClusterNodeRestoredFromBackup(t *testing.T) {
	nodes := startClusterNodes(t, 3)
	var routes []string
	for _, nd := range nodes {
		routes = append(routes, nd.listen)
	}
	ids := map[string]uint64{}
	for _, name := range []string{"alice", "bob0", "bob1", "bob2", "bob3", "bob4", "bob5"} {
		_, w, err := authOn(t, nodes[0], func(ctx context.Context, c *client.Conn) (codec.Welcome, error) {
			return c.Register(ctx, name, "password1")
		})
		if err != nil {
			t.Fatal(err)
		}
		ids[name] = w.User
	}
	// bob's home is the node restored; alice's is another, so the last
	// message crosses nodes after the restore.
	bobName := ""
	for _, name := range []string{"bob0", "bob1", "bob2", "bob3", "bob4", "bob5"} {
		if homeNode(nodes, ids[name]) != homeNode(nodes, ids["alice"]) {
			bobName = name
			break
		}
	}
	if bobName == "" {
		t.Fatal("every name has alice's home")
	}
	bob, home := ids[bobName], nodes[homeNode(nodes, ids[bobName])]
	alice := loginOn(t, nodes[homeNode(nodes, ids["alice"])], "alice")

	send := func(n int, tag string) []codec.MsgID {
		var out []codec.MsgID
		want := map[codec.MsgID]bool{}
		for i := range n {
			id := client.NewID()
			want[id] = true
			out = append(out, id)
			if err := alice.SendID(id, 0, bob, []byte(fmt.Sprintf("%s %d", tag, i)), i == n-1); err != nil {
				t.Fatal(err)
			}
		}
		for len(want) > 0 {
			delete(want, until[*codec.Sent](t, alice).ID)
		}
		return out
	}
	before := send(200, "before")

	bk := filepath.Join(t.TempDir(), "backup")
	resp, err := http.PostForm("http://"+home.admin+"/backup", url.Values{"dir": {bk}})
	if err != nil {
		t.Fatal(err)
	}
	var rep BackupReport
	err = json.NewDecoder(resp.Body).Decode(&rep)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil {
		t.Fatalf("backup: %s %v", resp.Status, err)
	}
	if _, err := os.Stat(filepath.Join(bk, "nats")); !os.IsNotExist(err) {
		t.Fatalf("the backup has the node's NATS store (%v): a restored node must take it from its peers", err)
	}
	send(50, "after") // acknowledged after the backup: a restore may lose these

	home.kill()
	if err := os.Rename(home.dir, home.dir+".before-restore"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home.dir + ".before-restore") })
	if err := os.Rename(bk, home.dir); err != nil {
		t.Fatal(err)
	}
	home.restart(t, strings.Join(routes, ","))
	t.Logf("restored %s from a backup of %d files, %d bytes", home.name, rep.Files, rep.Bytes)

	// alice's session stays: every store she sent the restored node was
	// answered, so her next one names none before it, and the node, which
	// forgot her stream when it stopped, takes it instead of finding a gap.
	last := client.NewID()
	if err := alice.SendID(last, 0, bob, []byte("after the restore"), true); err != nil {
		t.Fatal(err)
	}
	// The restored node may still be catching up when the first SEND
	// reaches it: wait for this one's SENT, retrying on a refusal.
	for {
		f := until[codec.Frame](t, alice)
		if s, ok := f.(*codec.Sent); ok && s.ID == last {
			break
		}
		if e, ok := f.(*codec.Error); ok && e.ID == last {
			last = client.NewID()
			time.Sleep(100 * time.Millisecond) // pacing of the retry, not a wait for a condition
			if err := alice.SendID(last, 0, bob, []byte("after the restore"), true); err != nil {
				t.Fatal(err)
			}
		}
	}

	c := loginOn(t, home, bobName)
	missing := map[codec.MsgID]bool{last: true}
	for _, id := range before {
		missing[id] = true
	}
	deadline := time.After(time.Minute)
	for len(missing) > 0 {
		select {
		case f := <-c.Events():
			if d, ok := f.(*codec.Deliver); ok {
				c.Ack(d.Seq, true)
				delete(missing, d.ID)
			}
		case <-deadline:
			t.Fatalf("%d messages acknowledged before the backup (or sent after the restore) were not delivered", len(missing))
		}
	}
}
