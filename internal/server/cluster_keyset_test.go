package server

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/secure"
)

// keyCommand runs `chatd key cmd` against nd's admin listener.
func keyCommand(t *testing.T, nd *clusterNode, cmd string) KeyReport {
	t.Helper()
	resp, err := (&http.Client{Timeout: time.Minute}).PostForm("http://"+nd.admin+"/key/"+cmd, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var r KeyReport
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &r) != nil {
		t.Fatalf("key %s at %s: %d %s", cmd, nd.name, resp.StatusCode, body)
	}
	return r
}

// handshakeWith dials nd naming key (Noise XX with it pinned) and
// registers name: nil once the node answers with that key and takes the
// login.
func handshakeWith(nd *clusterNode, key []byte, name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.DialTransport(ctx, nd.addr, codec.TransportNoiseXX, key)
	if err != nil {
		return err
	}
	defer c.Close()
	if !bytes.Equal(c.ServerKey(), key) {
		return fmt.Errorf("answered with %x", c.ServerKey())
	}
	_, err = c.Register(ctx, name, "password-"+name)
	var e *codec.Error
	if errors.As(err, &e) && e.Code == codec.CodeNameTaken {
		return nil
	}
	return err
}

// TestClusterKeyRotationReachesNodes: two nodes, each with its own copy
// of the key files (as README's "copy the file"). A rotation on node 1
// reaches node 2 over the cluster: a client on node 2 naming the new key
// is answered with it, and node 2's own files hold the new key, so it
// survives node 2's restart. The retirement follows the same way: node 2
// refuses the old key with ERROR 78.
func TestClusterKeyRotationReachesNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster of server processes")
	}
	nodes := make([]*clusterNode, 2)
	for i := range nodes {
		ip := fmt.Sprintf("127.0.0.%d", i+2)
		nodes[i] = &clusterNode{name: fmt.Sprintf("n%d", i+1), addr: freeOn(t, ip), listen: freeOn(t, ip), admin: freeOn(t, ip), dir: t.TempDir()}
	}
	n1, n2 := nodes[0], nodes[1]
	keyFile := func(nd *clusterNode) string { return filepath.Join(nd.dir, "noise.key") }
	k, _, err := secure.LoadKeys(keyFile(n1))
	if err != nil {
		t.Fatal(err)
	}
	old := k.Current.Public
	if err := os.WriteFile(keyFile(n2), k.Current.Private, 0o600); err != nil {
		t.Fatal(err)
	}
	runNodes(t, nodes)
	waitFor(t, func() bool { return handshakeWith(n2, old, "alice") == nil }) // the cluster is ready

	r := keyCommand(t, n1, "rotate")
	if r.Nodes["n2"] != "ok" || r.Next == "" {
		t.Fatalf("rotate at n1: %+v", r)
	}
	next, _ := hex.DecodeString(r.Next)
	waitFor(t, func() bool { return handshakeWith(n2, next, "bob") == nil })
	if err := handshakeWith(n2, old, "carol"); err != nil { // the overlap: both keys
		t.Fatalf("the old key at n2 during the rotation: %v", err)
	}
	k2, _, err := secure.LoadKeys(keyFile(n2))
	if err != nil || k2.Next == nil || !bytes.Equal(k2.Next.Public, next) {
		t.Fatalf("n2's key files after the rotation: %v", err)
	}

	r = keyCommand(t, n1, "retire")
	if r.Nodes["n2"] != "ok" || r.Current != hex.EncodeToString(next) {
		t.Fatalf("retire at n1: %+v", r)
	}
	waitFor(t, func() bool {
		var e *codec.Error
		return errors.As(handshakeWith(n2, old, "dave"), &e) && e.Code == codec.CodeKeyRetired
	})
	if err := handshakeWith(n2, next, "erin"); err != nil {
		t.Fatalf("the new key at n2 after the retirement: %v", err)
	}
	// Node 2 restarts on its own files: they hold the new key.
	n2.kill()
	ready := make(chan error, 1)
	n2.start(t, n1.listen+","+n2.listen, ready)
	if err := <-ready; err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return handshakeWith(n2, next, "frank") == nil })

	// A reload on node 1 finds node 2 with the same keys (once node 1
	// hears of the restarted node 2's handler: polled).
	waitFor(t, func() bool { return keyCommand(t, n1, "reload").Nodes["n2"] == "ok" })
}
