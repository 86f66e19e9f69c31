package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/e2e/device"
	"github.com/chatd/chatd/internal/e2e/envelope"
)

// mapTx is a device.Tx over a map, with no rollback: the benchmark
// measures routing and crypto, not the chat's SQLite (which writes each
// message, encrypted or not).
type mapTx map[string][]byte

func (m mapTx) Get(k string) ([]byte, bool, error) { v, ok := m[k]; return v, ok, nil }
func (m mapTx) Put(k string, v []byte) error       { m[k] = append([]byte(nil), v...); return nil }
func (m mapTx) Delete(k string) error              { delete(m, k); return nil }
func (m mapTx) Keys(p string) ([]string, error) {
	var out []string
	for k := range m {
		if strings.HasPrefix(k, p) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out, nil
}

type benchUser struct {
	cl  *client.Client
	dev *device.Device
	tx  mapTx
}

func (u *benchUser) update(fn func(device.Tx) error) error { return fn(u.tx) }

func benchConnect(b *testing.B, addr, name string, e2e bool) *benchUser {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := client.Connect(ctx, client.Options{Addr: addr, Name: name, Password: "password-" + name, Register: true, Plaintext: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cl.Close() })
	u := &benchUser{cl: cl, tx: mapTx{}}
	if e2e {
		u.dev = device.New(device.Config{})
		if _, err := u.dev.Init(u.tx); err != nil {
			b.Fatal(err)
		}
		if err := u.dev.Publish(ctx, cl.Conn(), u.update); err != nil {
			b.Fatal(err)
		}
	}
	return u
}

// BenchmarkRouted: alice sends b.N messages of text to bob
// through a real server (one connection each, loopback, no Noise); bob
// counts them, opening each when encrypted. msgs/s is end to end: the
// encrypted run includes sealing on alice's side and opening on bob's.
func BenchmarkRouted(b *testing.B) {
	// plain-186 sends plaintext as long as the envelope of 100 bytes
	// (2 + 40 header + 128 padded Content + 16 tag): the difference
	// between it and e2e is the crypto alone.
	for _, c := range []struct {
		name string
		e2e  bool
		size int
	}{{"plain-100", false, 100}, {"plain-186", false, 186}, {"e2e-100", true, 100}} {
		e2e := c.e2e
		b.Run(c.name, func(b *testing.B) {
			dir := b.TempDir()
			addr, _ := chatServer(b, filepath.Join(dir, "server"), "127.0.0.1:0")
			alice, bob := benchConnect(b, addr, "alice", e2e), benchConnect(b, addr, "bob", e2e)
			text := []byte(strings.Repeat("x", c.size))
			if e2e {
				bs, err := alice.cl.Conn().FetchKeys(context.Background(), bob.cl.User(), 1)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := alice.dev.StartSession(alice.tx, bob.cl.User(), &bs[0]); err != nil {
					b.Fatal(err)
				}
				// One exchange first (handed over directly), so the
				// measured envelopes are steady-state ratchet ones, not
				// prekey envelopes carrying the 1,645-byte initial message.
				hi := &envelope.Content{Type: envelope.ContentBody, Body: []byte("hi")}
				m, err := alice.dev.Seal(alice.tx, bob.cl.User(), hi)
				if err == nil {
					_, err = bob.dev.Open(bob.tx, alice.cl.User(), m)
				}
				if err == nil {
					m, err = bob.dev.Seal(bob.tx, alice.cl.User(), hi)
				}
				if err == nil {
					_, err = alice.dev.Open(alice.tx, bob.cl.User(), m)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			go func() { // SENT and receipts: a client's events must be read
				for range alice.cl.Events() {
				}
			}()
			got := make(chan error, 1)
			go func() {
				n := 0
				for f := range bob.cl.Events() {
					d, ok := f.(*codec.Deliver)
					if !ok {
						continue
					}
					if e2e {
						o, err := bob.dev.Open(bob.tx, d.From, d.Body)
						if err != nil || len(o.Body) != len(text) {
							got <- fmt.Errorf("open: %v", err)
							return
						}
					}
					if n++; n == b.N {
						got <- nil
						return
					}
				}
			}()
			var size int
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				body := text
				if e2e {
					var err error
					if body, err = alice.dev.Seal(alice.tx, bob.cl.User(), &envelope.Content{Type: envelope.ContentBody, Body: text}); err != nil {
						b.Fatal(err)
					}
				}
				size = len(body)
				for alice.cl.Pending() > 256 { // a window, as a real sender keeps
					time.Sleep(50 * time.Microsecond)
				}
				if _, err := alice.cl.Send(bob.cl.User(), body); err != nil {
					b.Fatal(err)
				}
			}
			select {
			case err := <-got:
				if err != nil {
					b.Fatal(err)
				}
			case <-time.After(60 * time.Second):
				b.Fatal("not all messages arrived")
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
			b.ReportMetric(float64(size), "body-bytes")
		})
	}
}
