package secure

import (
	"bytes"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/chatd/chatd/codec"
	"github.com/flynn/noise"
	"golang.org/x/crypto/curve25519"
)

var update = flag.Bool("update", false, "rewrite the Noise vectors in ../../PROTOCOL.md")

// counter is a deterministic byte source for test keys: start, start+1, ...
type counter struct{ b byte }

func (c *counter) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = c.b
		c.b++
	}
	return len(p), nil
}

// TestNoiseVectors runs an XX handshake with fixed keys through the same
// suite, prologue and framing as chatd, seals a PING in a record with this
// package's Session, and checks the bytes against PROTOCOL.md, where an
// implementer can compare their own.
func TestNoiseVectors(t *testing.T) {
	serverStatic, _ := noise.DH25519.GenerateKeypair(&counter{0x10})
	clientStatic, _ := noise.DH25519.GenerateKeypair(&counter{0x40})
	pre := codec.AppendPreamble(nil, codec.TransportNoiseXX)
	cl, _ := noise.NewHandshakeState(noise.Config{CipherSuite: Suite, Pattern: noise.HandshakeXX, Initiator: true,
		Prologue: pre, StaticKeypair: clientStatic, Random: &counter{0x70}})
	sv, _ := noise.NewHandshakeState(noise.Config{CipherSuite: Suite, Pattern: noise.HandshakeXX,
		Prologue: pre, StaticKeypair: serverStatic, Random: &counter{0xa0}})

	var doc strings.Builder
	line := func(name string, b []byte) { fmt.Fprintf(&doc, "%-28s %s\n", name, hex.EncodeToString(b)) }
	doc.WriteString("```text\n")
	line("server static private", serverStatic.Private)
	line("server static public", serverStatic.Public)
	line("client static private", clientStatic.Private)
	line("client ephemeral private", []byte{0x70, 0x71, 0x72, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x7b, 0x7c, 0x7d, 0x7e, 0x7f, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x8b, 0x8c, 0x8d, 0x8e, 0x8f})
	line("server ephemeral private", []byte{0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf, 0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xbb, 0xbc, 0xbd, 0xbe, 0xbf})
	line("preamble = prologue", pre)
	frame := func(b []byte) []byte { return append([]byte{byte(len(b) >> 8), byte(len(b))}, b...) }
	m1, _, _, _ := cl.WriteMessage(nil, nil)
	// The ephemeral "private" lines are the raw X25519 private keys: the
	// first message's e is their public half, with no hashing on the way.
	ePriv := make([]byte, 32)
	(&counter{0x70}).Read(ePriv)
	if ePub, _ := curve25519.X25519(ePriv, curve25519.Basepoint); !bytes.Equal(ePub, m1[:32]) {
		t.Fatalf("client e is %x, want X25519 of the listed private key %x", m1[:32], ePub)
	}
	sv.ReadMessage(nil, m1)
	line("-> e (len + message)", frame(m1))
	// The same first message from a client that pinned the server's key
	// and names it (key rotation): e, then the key as cleartext payload.
	pinned, _ := noise.NewHandshakeState(noise.Config{CipherSuite: Suite, Pattern: noise.HandshakeXX, Initiator: true,
		Prologue: pre, StaticKeypair: clientStatic, Random: &counter{0x70}})
	m1p, _, _, _ := pinned.WriteMessage(nil, serverStatic.Public)
	if !bytes.Equal(m1p[:32], m1[:32]) || !bytes.Equal(m1p[32:], serverStatic.Public) {
		t.Fatalf("pinned first message %x is not e | key", m1p)
	}
	line("-> e, naming the pinned key", frame(m1p))
	m2, _, _, _ := sv.WriteMessage(nil, nil)
	cl.ReadMessage(nil, m2)
	line("<- e, ee, s, es", frame(m2))
	m3, c1, c2, _ := cl.WriteMessage(nil, nil)
	_, s1, s2, err := sv.ReadMessage(nil, m3)
	if err != nil {
		t.Fatal(err)
	}
	line("-> s, se", frame(m3))
	client := &Session{tx: c1, rx: c2}
	server := &Session{tx: s2, rx: s1}
	ping := (&codec.Ping{Nonce: 0x0102030405060708}).Append(nil)
	rec, err := client.Seal(nil, ping)
	if err != nil {
		t.Fatal(err)
	}
	line("PING frame (plaintext)", ping)
	line("record: PING from client", rec)
	if got, err := server.Open(nil, rec[2:]); err != nil || hex.EncodeToString(got) != hex.EncodeToString(ping) {
		t.Fatalf("vector record does not open: %v", err)
	}
	pong := (&codec.Pong{Nonce: 0x0102030405060708}).Append(nil)
	rec2, _ := server.Seal(nil, pong)
	line("PONG frame (plaintext)", pong)
	line("record: PONG from server", rec2)
	doc.WriteString("```\n")

	const path = "../../PROTOCOL.md"
	const begin, end = "<!-- noise-vectors:begin -->\n", "<!-- noise-vectors:end -->"
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	i, j := strings.Index(text, begin), strings.Index(text, end)
	if i < 0 || j < i {
		t.Fatalf("%s lacks the Noise vector markers", path)
	}
	if *update {
		os.WriteFile(path, []byte(text[:i+len(begin)]+doc.String()+text[j:]), 0o644)
		return
	}
	if text[i+len(begin):j] != doc.String() {
		t.Error("PROTOCOL.md Noise vectors are out of date; run go test ./internal/secure -run TestNoiseVectors -update")
	}
}
