package secure

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chatd/chatd/codec"
)

// handshakeWith runs a whole handshake between a client pinning pin and a
// server holding keys, and returns the server's handshake.
func handshakeWith(t *testing.T, tr codec.Transport, pin []byte, keys *Keys) (*Handshake, error) {
	t.Helper()
	pre := codec.AppendPreamble(nil, tr)
	srv, err := ServerKeys(tr, keys, pre)
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
			return srv, err
		}
		if err := other.Read(msg[2:]); err != nil {
			return srv, err
		}
		turn, other = other, turn
	}
	if !bytes.Equal(cl.PeerStatic(), srv.Static()) {
		t.Fatalf("client saw %x, server used %x", cl.PeerStatic(), srv.Static())
	}
	return srv, nil
}

func TestRotateRetireFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "noise.key")
	k, created, err := LoadKeys(path)
	if err != nil || !created || k.Next != nil || k.Rotation != nil {
		t.Fatalf("first load: %+v %v %v", k, created, err)
	}
	old := k.Current
	if _, err := Retire(path); err == nil {
		t.Fatal("retired with no next key")
	}
	now := time.UnixMilli(time.Now().UnixMilli())
	k, err = Rotate(path, now)
	if err != nil {
		t.Fatal(err)
	}
	if k.Next == nil || !k.NextFrom.Equal(now) || !bytes.Equal(k.Current.Public, old.Public) {
		t.Fatalf("after rotate: %+v", k)
	}
	if err := VerifyRotation(old.Public, *k.Rotation); err != nil {
		t.Fatalf("the server's own rotation: %v", err)
	}
	if _, err := Rotate(path, now); err == nil {
		t.Fatal("a second rotation started before the first ended")
	}
	// A restart keeps both keys.
	again, _, err := LoadKeys(path)
	if err != nil || again.Next == nil || !bytes.Equal(again.Next.Private, k.Next.Private) ||
		!bytes.Equal(again.Current.Private, old.Private) || !again.NextFrom.Equal(now) {
		t.Fatalf("reload during the rotation: %+v %v", again, err)
	}
	next := *k.Next
	k, err = Retire(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k.Current.Private, next.Private) || k.Next != nil || !k.IsRetired(old.Public) || k.IsRetired(next.Public) {
		t.Fatalf("after retire: %+v", k)
	}
	if _, err := os.Stat(path + ".next"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the next-key file is still there: %v", err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file after retire: %v %v", fi, err)
	}
}

// TestRetireFinishedAfterCrash: a retirement that stopped right after
// recording the old key as retired is finished by the next load, so the
// old key is never both current and retired.
func TestRetireFinishedAfterCrash(t *testing.T) {
	path := filepath.Join(t.TempDir(), "noise.key")
	k, err := Rotate(path, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := appendSynced(path+".retired", k.Current.Public); err != nil {
		t.Fatal(err)
	}
	after, _, err := LoadKeys(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(after.Current.Public, k.Next.Public) || after.Next != nil || !after.IsRetired(k.Current.Public) {
		t.Fatalf("the interrupted retirement was not finished: %+v", after)
	}
}

func TestHandshakePicksTheAskedKey(t *testing.T) {
	old, _ := GenerateKeypair()
	next, _ := GenerateKeypair()
	gone, _ := GenerateKeypair()
	keys := &Keys{Current: old, Next: &next, Retired: [][]byte{gone.Public}}
	for _, tc := range []struct {
		name string
		tr   codec.Transport
		pin  []byte
		want []byte
	}{
		{"XX pinned to the old key", codec.TransportNoiseXX, old.Public, old.Public},
		{"XX pinned to the new key", codec.TransportNoiseXX, next.Public, next.Public},
		{"XX trusting any key", codec.TransportNoiseXX, nil, old.Public},
		{"IK to the old key", codec.TransportNoiseIK, old.Public, old.Public},
		{"IK to the new key", codec.TransportNoiseIK, next.Public, next.Public},
	} {
		srv, err := handshakeWith(t, tc.tr, tc.pin, keys)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !bytes.Equal(srv.Static(), tc.want) {
			t.Fatalf("%s: server answered with %x, want %x", tc.name, srv.Static(), tc.want)
		}
	}
	if _, err := handshakeWith(t, codec.TransportNoiseXX, gone.Public, keys); !errors.Is(err, ErrRetired) {
		t.Fatalf("XX pinned to a retired key: %v, want ErrRetired", err)
	}
	stranger, _ := GenerateKeypair()
	if _, err := handshakeWith(t, codec.TransportNoiseXX, stranger.Public, keys); !errors.Is(err, ErrPinned) {
		t.Fatalf("XX pinned to a key the server never had: %v, want ErrPinned", err)
	}
	if _, err := handshakeWith(t, codec.TransportNoiseIK, stranger.Public, keys); err == nil {
		t.Fatal("IK to a key the server never had succeeded")
	}
}

func TestVerifyRotationRefuses(t *testing.T) {
	old, _ := GenerateKeypair()
	next, _ := GenerateKeypair()
	from := time.UnixMilli(1_700_000_000_000)
	sig, err := Sign(old.Private, RotationMessage(old.Public, next.Public, from), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	good := Rotation{Old: old.Public, New: next.Public, ValidFrom: from, Sig: sig}
	if err := VerifyRotation(old.Public, good); err != nil {
		t.Fatal(err)
	}
	other, _ := GenerateKeypair()
	forged, _ := Sign(other.Private, RotationMessage(old.Public, other.Public, from), rand.Reader)
	for name, r := range map[string]Rotation{
		"signed by another key": {Old: old.Public, New: other.Public, ValidFrom: from, Sig: forged},
		"new key swapped":       {Old: old.Public, New: other.Public, ValidFrom: from, Sig: sig},
		"time changed":          {Old: old.Public, New: next.Public, ValidFrom: from.Add(time.Millisecond), Sig: sig},
		"from the new key":      {Old: next.Public, New: next.Public, ValidFrom: from, Sig: sig},
	} {
		if err := VerifyRotation(old.Public, r); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := VerifyRotation(other.Public, good); err == nil {
		t.Error("a rotation from a key that is not the pinned one was accepted")
	}
}

// TestRotationVector checks PROTOCOL.md's KEY_ROTATE vector (built in
// codec's vectors_test.go): its signature verifies under its old key, the
// server static key of section 8's handshake vectors.
func TestRotationVector(t *testing.T) {
	b := codecVector(t, "00000089"+"5c"+
		"d89e3bad79437dbed9f843418304f460ff05c7fe81fe4a9577a804cb9367ff66"+
		"392d174a38b3b1beafaf1fe824870841c5fa531bc6eafdb6402c124664488c1c"+
		"000001a1ee565e00"+
		"9d76fcb633e6eb18679650e1f9f10d19a82ee66824989e4f99f99b67c887ddc63b895e41b52ab18984101e6294ae70b059c1e3fa9f612a079129ae108a9c2503")
	f, err := codec.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	r := f.(*codec.KeyRotate)
	rot := Rotation{Old: r.Old[:], New: r.New[:], ValidFrom: time.UnixMilli(int64(r.ValidFrom)), Sig: r.Sig[:]}
	if err := VerifyRotation(r.Old[:], rot); err != nil {
		t.Fatal(err)
	}
}

func codecVector(t *testing.T, s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPinnedClientNamesItsKey: the first XX message of a client with a
// pin is e then the pinned key (what a server in a rotation reads), and
// 32 bytes (e alone) without one.
func TestPinnedClientNamesItsKey(t *testing.T) {
	k, _ := GenerateKeypair()
	pre := codec.AppendPreamble(nil, codec.TransportNoiseXX)
	cl, _ := Client(codec.TransportNoiseXX, k.Public, pre)
	msg, err := cl.Write(nil)
	if err != nil || len(msg) != 2+64 || !bytes.Equal(msg[2+32:], k.Public) {
		t.Fatalf("pinned first message %x (%v)", msg, err)
	}
	cl, _ = Client(codec.TransportNoiseXX, nil, pre)
	if msg, _ = cl.Write(nil); len(msg) != 2+32 {
		t.Fatalf("unpinned first message is %d bytes", len(msg))
	}
}
