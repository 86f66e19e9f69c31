package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/account"
	"github.com/chatd/chatd/internal/server"
)

// TestCapacityGoawayOverNoise: a server at capacity refuses a new
// connection with a plain GOAWAY before any handshake. The encrypted
// client read it as a broken handshake and backed off silently; it must
// report the server busy, with the server's delay, and get in once there
// is room.
func TestCapacityGoawayOverNoise(t *testing.T) {
	s, _ := startServer(t, server.Config{
		Addr: "127.0.0.1:0", DataDir: t.TempDir(),
		Hashing:   account.Hashing{Time: 1, MemoryKiB: 64},
		CacheSize: 8 << 20, MemTableSize: 4 << 20,
		MaxConns: 1, RetryAfter: 200 * time.Millisecond,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	opts := func(name string) client.Options {
		return client.Options{Addr: s.Addr().String(), Name: name, Password: "password-" + name, Register: true,
			Backoff: client.Backoff{Min: 20 * time.Millisecond, Max: 100 * time.Millisecond}}
	}
	first, err := client.Connect(ctx, opts("alice"))
	if err != nil {
		t.Fatal(err)
	}
	busy := make(chan client.Status, 16)
	o := opts("bob")
	o.OnStatus = func(st client.Status) {
		if st.State == client.StateWaiting {
			select {
			case busy <- st:
			default:
			}
		}
	}
	done := make(chan error, 1)
	go func() {
		cl, err := client.Connect(ctx, o)
		if err == nil {
			cl.Close()
		}
		done <- err
	}()
	select {
	case st := <-busy:
		var g *client.GoawayError
		if !st.Busy || !errors.As(st.Err, &g) || g.Reason != codec.GoawayCapacity || st.Wait < 200*time.Millisecond {
			t.Fatalf("refusal at capacity reported as %+v (err %v)", st, st.Err)
		}
	case <-ctx.Done():
		t.Fatal("no status while refused")
	}
	first.Close()
	if err := <-done; err != nil {
		t.Fatalf("no connection once there was room: %v", err)
	}
}
