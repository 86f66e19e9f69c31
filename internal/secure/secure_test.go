package secure

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/chatd/chatd/codec"
	"github.com/flynn/noise"
)

// pair runs a whole handshake between a client and a server in memory.
func pair(t testing.TB, tr codec.Transport, pin []byte, serverKey Keypair) (*Session, *Session, error) {
	pre := codec.AppendPreamble(nil, tr)
	srv, err := Server(tr, serverKey, pre)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := Client(tr, pin, pre)
	if err != nil {
		t.Fatal(err)
	}
	turn, other := cl, srv
	for i := 0; cl.Session() == nil || srv.Session() == nil; i++ {
		if i > 4 {
			t.Fatal("handshake did not finish")
		}
		msg, err := turn.Write(nil)
		if err != nil {
			return nil, nil, err
		}
		if err := other.Read(msg[2:]); err != nil {
			return nil, nil, err
		}
		turn, other = other, turn
	}
	return cl.Session(), srv.Session(), nil
}

func frames(n int, body string) []byte {
	var b []byte
	for i := 0; i < n; i++ {
		b = (&codec.Ping{Nonce: uint64(i)}).Append(b)
		b = (&codec.Send{To: 2, Body: []byte(body)}).Append(b)
	}
	return b
}

func openAll(t *testing.T, s *Session, records []byte) ([]byte, error) {
	t.Helper()
	var out []byte
	for len(records) > 0 {
		n := int(records[0])<<8 | int(records[1])
		var err error
		if out, err = s.Open(out, records[2:2+n]); err != nil {
			return out, err
		}
		records = records[2+n:]
	}
	return out, nil
}

func TestHandshakesAndRecords(t *testing.T) {
	key, _ := GenerateKeypair()
	for _, tr := range []codec.Transport{codec.TransportNoiseXX, codec.TransportNoiseIK} {
		pin := key.Public
		c, s, err := pair(t, tr, pin, key)
		if err != nil {
			t.Fatalf("transport %d: %v", tr, err)
		}
		want := frames(3, "hello")
		rec, err := c.Seal(nil, want)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(rec, []byte("hello")) {
			t.Fatal("plaintext visible in the record")
		}
		got, err := openAll(t, s, rec)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("transport %d: round trip: %v", tr, err)
		}
		back, _ := s.Seal(nil, frames(1, "reply"))
		if got, err := openAll(t, c, back); err != nil || !bytes.Equal(got, frames(1, "reply")) {
			t.Fatalf("transport %d: server to client: %v", tr, err)
		}
	}
}

func TestRecordsNeverSplitFrames(t *testing.T) {
	key, _ := GenerateKeypair()
	c, s, _ := pair(t, codec.TransportNoiseXX, nil, key)
	// 3,000 frames of about 60 bytes: several records, each of whole frames.
	want := frames(1500, "0123456789012345678901234567890123")
	rec, err := c.Seal(nil, want)
	if err != nil {
		t.Fatal(err)
	}
	records := 0
	var got []byte
	for p := rec; len(p) > 0; records++ {
		n := int(p[0])<<8 | int(p[1])
		if n > MaxMessage {
			t.Fatalf("record of %d bytes", n)
		}
		part, err := s.Open(nil, p[2:2+n]) // each record alone must hold whole frames
		if err != nil {
			t.Fatalf("record %d: %v", records, err)
		}
		got = append(got, part...)
		p = p[2+n:]
	}
	if records < 2 || !bytes.Equal(got, want) {
		t.Fatalf("%d records, equal=%v", records, bytes.Equal(got, want))
	}
	if _, err := c.Seal(nil, want[:len(want)-3]); !errors.Is(err, ErrSplitFrame) {
		t.Fatalf("a cut frame was sealed: %v", err)
	}
}

func TestTamperedReplayedReordered(t *testing.T) {
	key, _ := GenerateKeypair()
	c, s, _ := pair(t, codec.TransportNoiseXX, nil, key)
	r1, _ := c.Seal(nil, frames(1, "first"))

	bad := append([]byte(nil), r1...)
	bad[len(bad)-1] ^= 1
	if _, err := openAll(t, s, bad); !errors.Is(err, ErrRecord) {
		t.Fatalf("tampered record opened: %v", err)
	}
	// A fresh pair for each case: a failed open leaves the session unusable,
	// as the connection is closed.
	c, s, _ = pair(t, codec.TransportNoiseXX, nil, key)
	c.Seal(nil, frames(1, "first")) // sealed, never delivered: the next record is out of order
	r2, _ := c.Seal(nil, frames(1, "second"))
	if _, err := openAll(t, s, r2); !errors.Is(err, ErrRecord) {
		t.Fatalf("reordered record opened: %v", err)
	}
	c, s, _ = pair(t, codec.TransportNoiseXX, nil, key)
	r1, _ = c.Seal(nil, frames(1, "first"))
	if _, err := openAll(t, s, r1); err != nil {
		t.Fatal(err)
	}
	if _, err := openAll(t, s, r1); !errors.Is(err, ErrRecord) {
		t.Fatalf("replayed record opened: %v", err)
	}
}

func TestWrongKeyOrPrologueFails(t *testing.T) {
	key, _ := GenerateKeypair()
	other, _ := GenerateKeypair()
	if _, _, err := pair(t, codec.TransportNoiseXX, other.Public, key); !errors.Is(err, ErrPinned) {
		t.Fatalf("XX with a wrong pin: %v", err)
	}
	if _, _, err := pair(t, codec.TransportNoiseIK, other.Public, key); err == nil {
		t.Fatal("IK with the wrong server key completed")
	}
	// A changed transport byte in the prologue (a downgrade) fails.
	srv, _ := Server(codec.TransportNoiseXX, key, codec.AppendPreamble(nil, codec.TransportNoiseXX))
	cl, _ := Client(codec.TransportNoiseXX, nil, codec.AppendPreamble(nil, codec.TransportPlain))
	m1, _ := cl.Write(nil)
	srv.Read(m1[2:])
	m2, _ := srv.Write(nil)
	if err := cl.Read(m2[2:]); err == nil {
		t.Fatal("handshake with different prologues went through")
	}
}

func TestKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "noise.key")
	k1, created, err := LoadOrCreateKey(path)
	if err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v", st.Mode().Perm())
	}
	k2, created, err := LoadOrCreateKey(path)
	if err != nil || created || !bytes.Equal(k1.Public, k2.Public) || !bytes.Equal(k1.Private, k2.Private) {
		t.Fatalf("reload: %v %v", created, err)
	}
}

// BenchmarkSeal compares the two AEADs Noise offers on chat-sized batches
// (ten 100-byte SEND frames per record).
func BenchmarkSeal(b *testing.B) {
	batch := frames(5, string(make([]byte, 100)))
	for _, cipher := range []noise.CipherFunc{noise.CipherChaChaPoly, noise.CipherAESGCM} {
		b.Run(cipher.CipherName(), func(b *testing.B) {
			cs := noise.UnsafeNewCipherState(noise.NewCipherSuite(noise.DH25519, cipher, noise.HashBLAKE2s), [32]byte{1}, 0)
			s := &Session{tx: cs}
			out := make([]byte, 0, 4096)
			b.SetBytes(int64(len(batch)))
			b.ReportAllocs()
			for b.Loop() {
				out, _ = s.Seal(out[:0], batch)
			}
		})
	}
}

// BenchmarkHandshake is the cost of a full XX handshake, both sides.
func BenchmarkHandshake(b *testing.B) {
	key, _ := GenerateKeypair()
	for _, tr := range []codec.Transport{codec.TransportNoiseXX, codec.TransportNoiseIK} {
		b.Run([]string{"", "XX", "IK"}[tr], func(b *testing.B) {
			for b.Loop() {
				if _, _, err := pair(b, tr, key.Public, key); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
