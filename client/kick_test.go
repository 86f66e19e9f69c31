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

// TestRevokedSessionEndsClient: a Client whose session is revoked
// (KICKED 6) ends with ErrKicked; it does not reconnect and log in again
// with its password, which would undo the revocation.
func TestRevokedSessionEndsClient(t *testing.T) {
	s, _ := startServer(t, server.Config{
		Addr: "127.0.0.1:0", DataDir: t.TempDir(), Plaintext: true,
		Hashing: account.Hashing{Time: 1, MemoryKiB: 64}, CacheSize: 8 << 20, MemTableSize: 4 << 20,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Connect(ctx, client.Options{Addr: s.Addr().String(), Name: "alice", Password: "password-alice",
		Register: true, Plaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Conn().WriteRaw((&codec.Sessions{Req: 1}).Append(nil)); err != nil {
		t.Fatal(err)
	}
	var list *codec.SessionList
	for list == nil {
		select {
		case f := <-c.Events():
			list, _ = f.(*codec.SessionList)
		case <-ctx.Done():
			t.Fatal("no SESSION_LIST")
		}
	}
	if len(list.Sessions) != 1 {
		t.Fatalf("sessions %+v", list.Sessions)
	}
	if err := c.Conn().WriteRaw((&codec.SessionRevoke{Req: 2, Session: list.Sessions[0].Session}).Append(nil)); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case _, ok := <-c.Events():
			if ok {
				continue
			}
			if !errors.Is(c.Err(), client.ErrKicked) {
				t.Fatalf("the Client ended with %v, want ErrKicked", c.Err())
			}
			// The server ends the kicked session as it closes the
			// connection, which may come after the client saw the close.
			for s.Stats().Sessions != 0 {
				select {
				case <-ctx.Done():
					t.Fatalf("%d sessions online after the revoke: the Client logged in again", s.Stats().Sessions)
				case <-time.After(5 * time.Millisecond):
				}
			}
			return
		case <-ctx.Done():
			t.Fatalf("the Client did not end after KICKED 6 (sessions online: %d)", s.Stats().Sessions)
		}
	}
}
