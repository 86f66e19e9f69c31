package session

import (
	"bytes"
	"crypto/ecdh"
	"errors"
	"testing"

	"github.com/chatd/chatd/internal/e2e/envelope"
	"github.com/chatd/chatd/internal/e2e/ratchet"
)

// TestHeaderEncryptedSession: StartHE's envelope kinds tell Accept to use
// the HE ratchet, both sides keep it across Marshal, and an envelope whose
// kind names the other variant is refused without changing the session.
func TestHeaderEncryptedSession(t *testing.T) {
	bob := newDevice(t)
	aliceID, _ := ecdh.X25519().GenerateKey(nil)
	alice, err := StartHE(aliceID, bob.bundle, ratchet.Config{})
	if err != nil {
		t.Fatal(err)
	}
	e1, _ := alice.Seal(body("hi bob"))
	if kindOf(t, e1) != envelope.KindPreKeyHE {
		t.Fatalf("first HE envelope is %s", kindOf(t, e1))
	}
	bobS, c, _, err := Accept(bob.identity, bob, e1, ratchet.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if string(c.Body) != "hi bob" || !bobS.HeaderEncrypted() {
		t.Fatalf("accept: %q, HE %t", c.Body, bobS.HeaderEncrypted())
	}
	bobS, err = Unmarshal(bobS.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	r1, _ := bobS.Seal(body("hello alice"))
	if kindOf(t, r1) != envelope.KindRatchetHE {
		t.Fatalf("HE reply is %s", kindOf(t, r1))
	}
	open(t, alice, r1, "hello alice")
	e2, _ := alice.Seal(body("after the reply"))
	if kindOf(t, e2) != envelope.KindRatchetHE {
		t.Fatalf("HE envelope after a reply is %s", kindOf(t, e2))
	}

	// The same ratchet message under the plain kind is refused.
	wrong := bytes.Clone(e2)
	wrong[1] = byte(envelope.KindRatchet)
	before := bobS.Marshal()
	if _, err := bobS.Open(wrong); !errors.Is(err, ErrKind) {
		t.Fatalf("HE message in a plain envelope: %v", err)
	}
	if !bytes.Equal(bobS.Marshal(), before) {
		t.Fatal("refused envelope changed the session")
	}
	open(t, bobS, e2, "after the reply")

	// A plain session refuses an HE kind too.
	plain, _ := Start(aliceID, bob.bundle, ratchet.Config{})
	p1, _ := plain.Seal(body("plain"))
	bobP, _, _, err := Accept(bob.identity, bob, p1, ratchet.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if bobP.HeaderEncrypted() {
		t.Fatal("plain prekey envelope started an HE session")
	}
	p2, _ := plain.Seal(body("plain 2"))
	p2[1] = byte(envelope.KindPreKeyHE)
	if _, err := bobP.Open(p2); !errors.Is(err, ErrKind) {
		t.Fatalf("plain message under an HE kind: %v", err)
	}
}
