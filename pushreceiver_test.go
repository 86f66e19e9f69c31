package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/push"
	"github.com/chatd/chatd/internal/server"
)

// TestPushReceiverCommand runs `chatd push-receiver` against a server
// that allows loopback endpoints: a message to the offline user comes out
// as one decrypted push.
func TestPushReceiverCommand(t *testing.T) {
	cfg := backupTestConfig(t.TempDir())
	cfg.Push = push.Config{Policy: push.Policy{AllowHTTPLoopback: true}, Window: 50 * time.Millisecond}
	s, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		s.Close()
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	defer func() { s.Close(); <-served }()
	addr := s.Addr().String()

	out := &syncBuffer{}
	done := make(chan error, 1)
	rctx, stopReceiver := context.WithCancel(context.Background())
	defer stopReceiver()
	go func() {
		done <- pushReceiverCmd(rctx, []string{"-addr", addr, "-name", "bob", "-password", "password-bob", "-register"}, out)
	}()
	if !pollUntil(10*time.Second, func() bool { return strings.Contains(out.String(), "receiving pushes for bob") }) {
		t.Fatalf("no start line: %q", out.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	alice := signInTo(ctx, t, addr, "alice", true)
	defer alice.Close()
	bob, err := alice.LookupName(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if !pollUntil(10*time.Second, func() bool { return s.Stats().Sessions == 1 }) {
		t.Fatal("bob's session did not end")
	}
	if _, err := alice.Send(bob, []byte("hi"), true); err != nil {
		t.Fatal(err)
	}
	for f := range alice.Events() {
		if _, ok := f.(*codec.Sent); ok {
			break
		}
	}
	if !pollUntil(10*time.Second, func() bool { return strings.Contains(out.String(), `push: {"kind":"sync","count":1} (urgency high`) }) {
		t.Fatalf("no push printed: %q", out.String())
	}
	if strings.Contains(out.String(), "refused") {
		t.Fatalf("a push was malformed: %q", out.String())
	}
	stopReceiver()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("push-receiver did not stop")
	}
}
