package server

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
)

// TestClientSurvivesRestart stops the server while alice keeps sending,
// starts it again on the same data folder and address, and checks that
// bob gets every message exactly once and in order: the client resends
// what never got SENT (flagged DUP) and drops deliveries it already had.
func TestClientSurvivesRestart(t *testing.T) {
	cfg := testConfig(t)
	s1, stop := serve(t, cfg)
	cfg.Addr = s1.Addr().String()
	addr := clientAddr(t, s1)
	if viaWebSocket {
		cfg.WSAddr = s1.WSAddr().String()
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts := func(name string) client.Options {
		return client.Options{Addr: addr, Name: name, Password: "password-" + name, Register: true,
			Backoff: client.Backoff{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond, Jitter: true}}
	}
	alice, err := client.Connect(ctx, opts("alice"))
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	bob, err := client.Connect(ctx, opts("bob"))
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()

	const n = 200
	for i := 0; i < n/2; i++ {
		alice.Send(bob.User(), []byte(fmt.Sprint(i)))
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for i := n / 2; i < n; i++ {
		alice.Send(bob.User(), []byte(fmt.Sprint(i)))
	}
	startServer(t, cfg) // same folder, same address

	for i := 0; i < n; i++ {
		select {
		case f := <-bob.Events():
			d, ok := f.(*codec.Deliver)
			if !ok {
				i--
				continue
			}
			if string(d.Body) != fmt.Sprint(i) {
				t.Fatalf("delivery %d: got %q", i, d.Body)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("delivery %d did not arrive (alice has %d unacknowledged)", i, alice.Pending())
		}
	}
	waitFor(t, func() bool { return alice.Pending() == 0 })
	// Nothing else arrives: no duplicate slipped through.
	deadline := time.After(300 * time.Millisecond)
	for {
		select {
		case f := <-bob.Events():
			if d, ok := f.(*codec.Deliver); ok {
				t.Fatalf("duplicate delivery %q", d.Body)
			}
		case <-deadline:
			return
		}
	}
}
