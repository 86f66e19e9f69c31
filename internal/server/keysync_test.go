package server

import (
	"bytes"
	"testing"

	"github.com/chatd/chatd/internal/cluster"
	"github.com/chatd/chatd/internal/secure"
)

// TestKeySetSealed: a key set sealed by one node opens on a node with the
// same cluster secret, and not on one with another secret or altered.
func TestKeySetSealed(t *testing.T) {
	k, _, err := secure.LoadKeys(t.TempDir() + "/noise.key")
	if err != nil {
		t.Fatal(err)
	}
	node := func(secret string) *Server { return &Server{cfg: Config{Cluster: &cluster.Config{Secret: secret}}} }
	a, b, other := node("cluster-secret-0123"), node("cluster-secret-0123"), node("cluster-secret-9999")
	sealed, err := a.sealKeys(k)
	if err != nil {
		t.Fatal(err)
	}
	got, err := b.openKeys(sealed)
	if err != nil || !bytes.Equal(got.Current.Private, k.Current.Private) {
		t.Fatalf("opened %+v, %v", got, err)
	}
	if _, err := other.openKeys(sealed); err == nil {
		t.Fatal("opened under another cluster secret")
	}
	sealed[len(sealed)-1] ^= 1
	if _, err := b.openKeys(sealed); err == nil {
		t.Fatal("opened an altered key set")
	}
}
