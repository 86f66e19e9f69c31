package secure

import (
	"bytes"
	"runtime"
	"testing"

	"github.com/chatd/chatd/codec"
	"github.com/flynn/noise"
)

// TestFastDHMatchesReference: with the same keys and randomness, a
// handshake on this package's X25519 writes the same bytes as one on
// noise.DH25519, both ways, for XX and IK, and ends with the same
// channel binding and ciphers.
func TestFastDHMatchesReference(t *testing.T) {
	serverStatic, _ := noise.DH25519.GenerateKeypair(&counter{0x10})
	clientStatic, _ := noise.DH25519.GenerateKeypair(&counter{0x40})
	for _, tr := range []codec.Transport{codec.TransportNoiseXX, codec.TransportNoiseIK} {
		pre := codec.AppendPreamble(nil, tr)
		p, _ := pattern(tr)
		run := func(cs func() noise.CipherSuite) (msgs [][]byte, binding []byte, sealed []byte) {
			cfg := noise.Config{Pattern: p, Prologue: pre}
			ccfg, scfg := cfg, cfg
			ccfg.CipherSuite, ccfg.Initiator, ccfg.StaticKeypair, ccfg.Random = cs(), true, clientStatic, &counter{0x70}
			scfg.CipherSuite, scfg.StaticKeypair, scfg.Random = cs(), serverStatic, &counter{0xa0}
			if tr == codec.TransportNoiseIK {
				ccfg.PeerStatic = serverStatic.Public
			}
			cl, err := noise.NewHandshakeState(ccfg)
			if err != nil {
				t.Fatal(err)
			}
			sv, err := noise.NewHandshakeState(scfg)
			if err != nil {
				t.Fatal(err)
			}
			w, r := cl, sv
			for i := 0; i < len(p.Messages); i++ {
				m, cs1, _, err := w.WriteMessage(nil, nil)
				if err != nil {
					t.Fatalf("%v message %d: %v", tr, i, err)
				}
				if _, _, _, err := r.ReadMessage(nil, m); err != nil {
					t.Fatalf("%v message %d: %v", tr, i, err)
				}
				msgs = append(msgs, m)
				if cs1 != nil {
					sealed, _ = cs1.Encrypt(nil, nil, []byte("ping"))
				}
				w, r = r, w
			}
			return msgs, cl.ChannelBinding(), sealed
		}
		wantMsgs, wantBinding, wantSealed := run(func() noise.CipherSuite { return Suite })
		gotMsgs, gotBinding, gotSealed := run(func() noise.CipherSuite { return suiteFor(&x25519{}) })
		for i := range wantMsgs {
			if !bytes.Equal(gotMsgs[i], wantMsgs[i]) {
				t.Errorf("%v message %d: %x, want %x", tr, i, gotMsgs[i], wantMsgs[i])
			}
		}
		if !bytes.Equal(gotBinding, wantBinding) || !bytes.Equal(gotSealed, wantSealed) {
			t.Errorf("%v: binding %x sealed %x, want %x %x", tr, gotBinding, gotSealed, wantBinding, wantSealed)
		}
		if name := suiteFor(&x25519{}).Name(); !bytes.Equal(name, Suite.Name()) {
			t.Errorf("suite %s, want %s", name, Suite.Name())
		}
	}
}

// TestHandshakeMultiplications: an XX responder does the four X25519
// scalar multiplications Noise needs (its ephemeral key and three DHs)
// and no more, once its static key is known; the initiator five (its
// transport key too). noise.DH25519 did twice as many.
func TestHandshakeMultiplications(t *testing.T) {
	key, _ := GenerateKeypair()
	pre := codec.AppendPreamble(nil, codec.TransportNoiseXX)
	for round := 0; round < 2; round++ {
		srv, err := Server(codec.TransportNoiseXX, key, pre)
		if err != nil {
			t.Fatal(err)
		}
		cl, err := Client(codec.TransportNoiseXX, key.Public, pre)
		if err != nil {
			t.Fatal(err)
		}
		finish(t, cl, srv)
		want := 4
		if round == 0 {
			want = 5 // a static key not seen before costs one, once
		}
		if srv.dh.mults != want || cl.dh.mults != 5 {
			t.Errorf("round %d: server %d multiplications (want %d), client %d (want 5)", round, srv.dh.mults, want, cl.dh.mults)
		}
	}
}

// TestLowOrderPeerKeyRefused: a peer ephemeral of low order (all zeros)
// makes the DH fail, as with noise.DH25519, rather than a zero secret.
func TestLowOrderPeerKeyRefused(t *testing.T) {
	key, _ := GenerateKeypair()
	pre := codec.AppendPreamble(nil, codec.TransportNoiseXX)
	srv, err := Server(codec.TransportNoiseXX, key, pre)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Read(make([]byte, 32)); err != nil {
		t.Fatal(err) // message 1 only carries e; no DH yet
	}
	if _, err := srv.Write(nil); err == nil {
		t.Fatal("ee with an all-zero peer key succeeded")
	}
}

// TestHandshakeForgetsKeys: once a handshake completes, its DH function
// holds no key (an ephemeral key must not outlive the handshake), and the
// session still works both ways.
func TestHandshakeForgetsKeys(t *testing.T) {
	key, _ := GenerateKeypair()
	pre := codec.AppendPreamble(nil, codec.TransportNoiseXX)
	srv, _ := Server(codec.TransportNoiseXX, key, pre)
	cl, _ := Client(codec.TransportNoiseXX, nil, pre)
	finish(t, cl, srv)
	for _, h := range []*Handshake{srv, cl} {
		if h.dh.n != 0 || h.dh.keys != [2]keptKey{} {
			t.Errorf("initiator %v: %d keys kept after the handshake", h.initiator, h.dh.n)
		}
	}
	batch := frames(2, "hi")
	for _, p := range [][2]*Session{{cl.Session(), srv.Session()}, {srv.Session(), cl.Session()}} {
		rec, err := p[0].Seal(nil, batch)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := openAll(t, p[1], rec); err != nil || !bytes.Equal(got, batch) {
			t.Fatalf("record after the handshake: %v", err)
		}
	}
}

// TestSessionHeap: a session keeps its two cipher states and nothing of
// the handshake that made it (not its DH function, keys or suite).
func TestSessionHeap(t *testing.T) {
	key, _ := GenerateKeypair()
	const n = 2000
	keep := make([]*Session, n)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range keep {
		_, s, err := pair(t, codec.TransportNoiseXX, nil, key)
		if err != nil {
			t.Fatal(err)
		}
		keep[i] = s
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / n
	runtime.KeepAlive(keep)
	// Two cipher states with their ChaCha20-Poly1305 ciphers take about
	// 300 bytes; holding the handshake's suite and keys took twice that.
	if per > 450 {
		t.Errorf("%.0f heap bytes per session, want at most 450", per)
	}
	t.Logf("%.0f heap bytes per session", per)
}

// finish runs a handshake's messages between cl and srv until both have
// a session.
func finish(t *testing.T, cl, srv *Handshake) {
	t.Helper()
	for turn, other := cl, srv; cl.Session() == nil || srv.Session() == nil; turn, other = other, turn {
		msg, err := turn.Write(nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := other.Read(msg[2:]); err != nil {
			t.Fatal(err)
		}
	}
}
