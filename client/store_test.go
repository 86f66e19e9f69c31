package client_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/account"
	"github.com/chatd/chatd/internal/server"
)

func storeServer(t *testing.T) string {
	s, _ := startServer(t, server.Config{
		Addr: "127.0.0.1:0", DataDir: t.TempDir(), Plaintext: true,
		Hashing:   account.Hashing{Time: 1, MemoryKiB: 64},
		CacheSize: 8 << 20, MemTableSize: 4 << 20,
		ReceiptDelay: -1,
	})
	return s.Addr().String()
}

func connectWith(t *testing.T, ctx context.Context, addr, name string, opts client.Options) *client.Client {
	t.Helper()
	opts.Addr, opts.Name, opts.Password, opts.Register, opts.Plaintext = addr, name, "password-"+name, true, true
	opts.Backoff = client.Backoff{Min: 10 * time.Millisecond, Max: 50 * time.Millisecond}
	cl, err := client.Connect(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// waitReceipt waits for a receipt of kind for id on cl's events.
func waitReceipt(ctx context.Context, cl *client.Client, kind codec.ReceiptKind, id codec.MsgID) error {
	for {
		select {
		case f, ok := <-cl.Events():
			if !ok {
				return cl.Err()
			}
			if r, ok := f.(*codec.Receipt); ok && r.Kind == kind {
				for i := 0; i < r.IDs.Len(); i++ {
					if r.IDs.At(i) == id {
						return nil
					}
				}
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// TestAckAfterStore: a message is acknowledged to the server (which turns
// the ACK into its sender's delivered tick and deletes it) only once the
// application's Store hook has returned, not when it reaches Events.
func TestAckAfterStore(t *testing.T) {
	addr := storeServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	release := make(chan struct{})
	var mu sync.Mutex
	var stored []codec.MsgID
	bob := connectWith(t, ctx, addr, "bob", client.Options{Store: func(f codec.Frame) error {
		if d, ok := f.(*codec.Deliver); ok {
			<-release
			mu.Lock()
			stored = append(stored, d.ID)
			mu.Unlock()
		}
		return nil
	}})
	go func() {
		for range bob.Events() {
		}
	}()
	alice := connectWith(t, ctx, addr, "alice", client.Options{})
	id, _ := alice.Send(bob.User(), []byte("hello"))

	// While bob's store holds the message, alice gets no delivered tick.
	hold, stop := context.WithTimeout(ctx, 500*time.Millisecond)
	err := waitReceipt(hold, alice, codec.ReceiptDelivered, id)
	stop()
	if err == nil {
		t.Fatal("delivered receipt before the recipient stored the message")
	}
	close(release)
	if err := waitReceipt(ctx, alice, codec.ReceiptDelivered, id); err != nil {
		t.Fatalf("no delivered receipt after the store: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(stored) != 1 || stored[0] != id {
		t.Fatalf("stored %v, want [%v]", stored, id)
	}
}

// TestStoreFailureRedelivers: when the Store hook fails (a full disk, a
// crash mid-write), the message is not acknowledged, so the server keeps
// it and sends it again; it reaches Events once, after a successful store,
// and the client reports the failure through OnStatus.
func TestStoreFailureRedelivers(t *testing.T) {
	addr := storeServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var mu sync.Mutex
	calls := 0
	var statuses []client.Status
	bob := connectWith(t, ctx, addr, "bob", client.Options{
		Store: func(f codec.Frame) error {
			if _, ok := f.(*codec.Deliver); !ok {
				return nil
			}
			mu.Lock()
			defer mu.Unlock()
			calls++
			if calls == 1 {
				return errors.New("disk on fire")
			}
			return nil
		},
		OnStatus: func(s client.Status) {
			mu.Lock()
			statuses = append(statuses, s)
			mu.Unlock()
		},
	})
	alice := connectWith(t, ctx, addr, "alice", client.Options{})
	id, _ := alice.Send(bob.User(), []byte("hello"))
	got := 0
	for got == 0 {
		select {
		case f := <-bob.Events():
			if d, ok := f.(*codec.Deliver); ok {
				if d.ID != id {
					t.Fatalf("delivered %v, want %v", d.ID, id)
				}
				got++
			}
		case <-ctx.Done():
			t.Fatal("message never delivered after the store failure")
		}
	}
	if err := waitReceipt(ctx, alice, codec.ReceiptDelivered, id); err != nil {
		t.Fatalf("no delivered receipt: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != 2 {
		t.Fatalf("Store called %d times for the message, want 2 (a failure, then the redelivery)", calls)
	}
	reported := false
	for _, s := range statuses {
		if s.State == client.StateWaiting && s.Err != nil && errors.Unwrap(s.Err) != nil && s.Err.Error() == "client: store: disk on fire" {
			reported = true
		}
	}
	if !reported {
		t.Fatalf("store failure not reported through OnStatus: %+v", statuses)
	}
}
