package client_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/account"
	"github.com/chatd/chatd/internal/server"
)

// TestSessionsLabelEnd: Sessions lists the user's devices with the
// caller's marked and its label; EndSession kills another device's token,
// refuses an unknown session with ERROR 76, and ending one's own session
// is answered OK, then KICKED 6.
func TestSessionsLabelEnd(t *testing.T) {
	s, _ := startServer(t, server.Config{
		Addr: "127.0.0.1:0", DataDir: t.TempDir(), Plaintext: true,
		Hashing: account.Hashing{Time: 1, MemoryKiB: 64}, CacheSize: 8 << 20, MemTableSize: 4 << 20,
	})
	addr := s.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	phone := register(t, addr, "alice")
	if err := phone.LabelSession(ctx, "phone"); err != nil {
		t.Fatal(err)
	}
	if err := phone.LabelSession(ctx, strings.Repeat("x", codec.MaxLabel+1)); err == nil {
		t.Fatal("a label over MaxLabel was accepted")
	}
	phoneTok := phone.Welcome.Token
	laptop, err := client.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer laptop.Close()
	if _, err := laptop.Login(ctx, "alice", "password-alice"); err != nil {
		t.Fatal(err)
	}
	list, err := laptop.Sessions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) == 2 && list[1].Flags&codec.SessionCurrent != 0 && list[0].LastSeen == list[1].LastSeen {
		list[0], list[1] = list[1], list[0] // most recently seen first; within one millisecond, either
	}
	if len(list) != 2 || list[0].Flags&codec.SessionCurrent == 0 || list[1].Flags&codec.SessionCurrent != 0 ||
		string(list[1].Label) != "phone" || !strings.HasPrefix(string(list[1].Addr), "127.0.0.1:") {
		t.Fatalf("sessions: %+v", list)
	}
	me, other := list[0].Session, list[1].Session

	var e *codec.Error
	if err := laptop.EndSession(ctx, me^other^1); !errors.As(err, &e) || e.Code != codec.CodeUnknownSession {
		t.Fatalf("ending an unknown session: %v", err)
	}
	if err := laptop.EndSession(ctx, other); err != nil {
		t.Fatal(err)
	}
	again, err := client.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if _, err := again.Resume(ctx, phoneTok); !errors.As(err, &e) || e.Code != codec.CodeInvalidToken {
		t.Fatalf("the ended session's token: %v", err)
	}
	if list, err := laptop.Sessions(ctx); err != nil || len(list) != 1 || list[0].Session != me {
		t.Fatalf("sessions after the end: %+v, %v", list, err)
	}

	// Its own session: OK first, then KICKED 6 and the connection ends.
	if err := laptop.EndSession(ctx, me); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case f := <-laptop.Events():
			if k, ok := f.(*codec.Kicked); ok {
				if k.Reason != codec.KickRevoked {
					t.Fatalf("kicked with %v", k.Reason)
				}
				return
			}
		case <-ctx.Done():
			t.Fatal("no KICKED after ending one's own session")
		}
	}
}
