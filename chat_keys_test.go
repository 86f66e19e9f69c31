package main

import (
	"bytes"
	"fmt"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/account"
	"github.com/chatd/chatd/internal/server"
)

// startPinnedChat is startChat over Noise, pinning key.
func startPinnedChat(t *testing.T, addr, name, store string, key []byte) *chatTerm {
	t.Helper()
	r, w := io.Pipe()
	c := &chatTerm{t: t, name: name, in: w, out: &syncBuffer{}, done: make(chan error, 1)}
	cfg := chatConfig{
		Client: client.Options{Addr: addr, Name: name, Password: "password-" + name, Register: true, ServerKey: key,
			Backoff: client.Backoff{Min: 50 * time.Millisecond, Max: 200 * time.Millisecond}},
		Store: store, ConnectTimeout: 10 * time.Second,
	}
	go func() { c.done <- runChat(cfg, r, c.out) }()
	t.Cleanup(func() { c.quit() })
	c.expect("logged in as " + name)
	return c
}

// TestChatFollowsKeyRotation: a chat pinned to the server's key hears of
// the next key, says so calmly, and a later run given the old key (as a
// person's --server-key would stay) pins the new one after the old key
// was retired, instead of failing.
func TestChatFollowsKeyRotation(t *testing.T) {
	s, err := server.New(server.Config{
		Addr: "127.0.0.1:0", DataDir: t.TempDir(),
		Hashing:   account.Hashing{Time: 1, MemoryKiB: 64},
		CacheSize: 8 << 20, MemTableSize: 4 << 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		s.Close()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	t.Cleanup(func() {
		s.Close()
		<-done
	})
	addr, old := s.Addr().String(), bytes.Clone(s.PublicKey())
	store := filepath.Join(t.TempDir(), "alice.db")

	c := startPinnedChat(t, addr, "alice", store, old) // "encrypted ... pinned" comes before "logged in"
	k, err := s.RotateKey()
	if err != nil {
		t.Fatal(err)
	}
	next := k.Next.Public
	c.expect(fmt.Sprintf("the server is moving to a new key %x, announced and signed by the key you pinned", next))
	if err := c.quit(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RetireKey(); err != nil {
		t.Fatal(err)
	}
	c = startPinnedChat(t, addr, "alice", store, old)
	if !bytes.Contains([]byte(c.out.String()), []byte(fmt.Sprintf("encrypted (Noise XX) to the server's new key %x", next))) {
		t.Fatalf("the second run did not pin the new key:\n%s", c.out.String())
	}
}

// TestChatExplainsRetiredKey: a chat pinned to a retired key it never
// heard the successor of says what to do.
func TestChatExplainsRetiredKey(t *testing.T) {
	err := explainLogin(&codecErrKeyRetired, chatConfig{Client: client.Options{Addr: "chat.example:7420"}})
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("pass it with --server-key")) {
		t.Fatalf("explainLogin = %v", err)
	}
}

var codecErrKeyRetired = codec.Error{Code: codec.CodeKeyRetired}
