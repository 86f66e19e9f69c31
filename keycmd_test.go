package main

import (
	"bytes"
	"encoding/hex"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chatd/chatd/internal/secure"
	"github.com/chatd/chatd/internal/server"
)

// TestKeyCommandOnline runs chatd key against a running server's admin
// listener: rotate, show, retire, and the refusals in between.
func TestKeyCommandOnline(t *testing.T) {
	s, admin, _ := startBackupServer(t, t.TempDir())
	old := hex.EncodeToString(s.PublicKey())
	var out, errOut bytes.Buffer
	if code := run([]string{"key", "retire", "-admin", admin}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "rotate first") {
		t.Fatalf("retire before rotate: exit %d, %q", code, errOut.String())
	}
	out.Reset()
	if code := run([]string{"key", "rotate", "-admin", admin}, &out, &errOut); code != 0 {
		t.Fatalf("rotate: exit %d, %s", code, errOut.String())
	}
	k := s.Keys()
	if k.Next == nil || !strings.Contains(out.String(), "current key: "+old) || !strings.Contains(out.String(), "next key:    "+hex.EncodeToString(k.Next.Public)) {
		t.Fatalf("rotate printed %q; server holds %+v", out.String(), k)
	}
	next := hex.EncodeToString(k.Next.Public)
	errOut.Reset()
	if code := run([]string{"key", "rotate", "-admin", admin}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "retire the old key first") {
		t.Fatalf("second rotate: exit %d, %q", code, errOut.String())
	}
	out.Reset()
	if code := run([]string{"key", "retire", "-admin", admin}, &out, &errOut); code != 0 {
		t.Fatalf("retire: exit %d, %s", code, errOut.String())
	}
	if got := hex.EncodeToString(s.PublicKey()); got != next || !strings.Contains(out.String(), "retired:     "+old) {
		t.Fatalf("after retire the server's key is %s, printed %q", got, out.String())
	}
	out.Reset()
	if code := run([]string{"key", "show", "-admin", admin}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "current key: "+next) {
		t.Fatalf("show: exit %d, %q", code, out.String())
	}
}

// TestKeyCommandOffline rotates and retires on a stopped server's files.
func TestKeyCommandOffline(t *testing.T) {
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	if code := run([]string{"key", "show", "-data", dir}, &out, &errOut); code != 0 {
		t.Fatalf("show: exit %d, %s", code, errOut.String())
	}
	first := strings.TrimPrefix(strings.SplitN(out.String(), "\n", 2)[0], "current key: ")
	out.Reset()
	if code := run([]string{"key", "rotate", "-data", dir}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "next key:") {
		t.Fatalf("rotate: exit %d, %q %s", code, out.String(), errOut.String())
	}
	out.Reset()
	if code := run([]string{"key", "retire", "-data", dir}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "retired:     "+first) {
		t.Fatalf("retire: exit %d, %q %s", code, out.String(), errOut.String())
	}
	s, _, _ := startBackupServer(t, dir)
	if hex.EncodeToString(s.PublicKey()) == first || !s.Keys().IsRetired(mustDecodeHex(t, first)) {
		t.Fatal("the server did not start on the new key with the old one retired")
	}
}

func mustDecodeHex(t *testing.T, s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBackupKeepsRotation: a backup taken during a key rotation holds
// the next key, and one taken after it the retired keys, so a restored
// server goes on where the rotation was.
func TestBackupKeepsRotation(t *testing.T) {
	s, admin, _ := startBackupServer(t, t.TempDir())
	if _, err := s.RotateKey(); err != nil {
		t.Fatal(err)
	}
	during := filepath.Join(t.TempDir(), "during")
	if _, err := requestBackup(&http.Client{Timeout: time.Minute}, admin, during); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RetireKey(); err != nil {
		t.Fatal(err)
	}
	after := filepath.Join(t.TempDir(), "after")
	if _, err := requestBackup(&http.Client{Timeout: time.Minute}, admin, after); err != nil {
		t.Fatal(err)
	}
	k, _, err := secure.LoadKeys(filepath.Join(during, "noise.key"))
	if err != nil || k.Next == nil {
		t.Fatalf("the backup during the rotation has no next key: %v", err)
	}
	k, _, err = secure.LoadKeys(filepath.Join(after, "noise.key"))
	if err != nil || k.Next != nil || len(k.Retired) != 1 || !bytes.Equal(k.Current.Public, s.PublicKey()) {
		t.Fatalf("the backup after retirement: %+v, %v", k, err)
	}
}

// TestKeyCommandListsNodes: on a cluster the command says what each
// other node did with the keys, in node order.
func TestKeyCommandListsNodes(t *testing.T) {
	var out bytes.Buffer
	printKeys(&out, "rotate", server.KeyReport{Current: "aa", Next: "bb",
		Nodes: map[string]string{"n3": "no answer (down?): run `chatd key reload`", "n2": "ok"}})
	if !strings.Contains(out.String(), "node n2: ok\nnode n3: no answer (down?): run `chatd key reload`") {
		t.Fatalf("output:\n%s", out.String())
	}
}
