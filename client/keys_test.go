package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/account"
	"github.com/chatd/chatd/internal/server"
)

// TestClientRefillsOnKeysLow: a Client uploads its keys, another user's
// fetches take them below the threshold, and the KEYS_LOW push reaches
// Options.OnKeys, on which the Client refills: no polling.
func TestClientRefillsOnKeysLow(t *testing.T) {
	cfg := server.Config{
		Addr: "127.0.0.1:0", DataDir: t.TempDir(), Plaintext: true,
		Hashing:   account.Hashing{Time: 1, MemoryKiB: 64},
		CacheSize: 8 << 20, MemTableSize: 4 << 20,
	}
	cfg.Prekeys.LowEC, cfg.Prekeys.LowKEM = 3, 1
	s, _ := startServer(t, cfg)
	addr := s.Addr().String()
	register(t, addr, "alice").Close()
	bob := register(t, addr, "bob")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	keys := make(chan codec.Frame, 4)
	alice, err := client.Connect(ctx, client.Options{Addr: addr, Name: "alice", Password: "password-alice", Plaintext: true,
		OnKeys: func(f codec.Frame) { keys <- f }})
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	d, err := client.NewDeviceKeys()
	if err != nil {
		t.Fatal(err)
	}
	ups, err := d.Uploads(true, 4, 2)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := alice.UploadKeys(ctx, ups[0]); err != nil || c.EC != 4 || c.KEM != 2 {
		t.Fatalf("upload: %+v, %v", c, err)
	}
	for range 2 {
		bs, err := bob.FetchKeys(ctx, alice.User(), 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := client.VerifyBundle(&bs[0]); err != nil {
			t.Fatal(err)
		}
	}
	var low *codec.KeysLow
	select {
	case f := <-keys:
		low, _ = f.(*codec.KeysLow)
	case <-ctx.Done():
		t.Fatal("no KEYS_LOW")
	}
	if low == nil || *low != (codec.KeysLow{Device: 1, EC: 2, KEM: 0}) {
		t.Fatalf("OnKeys got %+v", low)
	}
	ups, err = d.Uploads(false, 100, 10)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := alice.UploadKeys(ctx, ups[0]); err != nil || c.EC != 102 || c.KEM != 10 {
		t.Fatalf("refill: %+v, %v", c, err)
	}
	if ok, err := alice.CheckKeys(ctx, d.Digest()); err != nil || !ok {
		t.Fatalf("CheckKeys: %v, %v", ok, err)
	}
}
