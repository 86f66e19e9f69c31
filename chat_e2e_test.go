package main

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/internal/e2e/device"
	"github.com/chatd/chatd/internal/server"
)

// safetyNumber returns the 60 digits a /verify printed.
func safetyNumber(t *testing.T, c *chatTerm, peer string) string {
	t.Helper()
	c.say("/verify " + peer)
	line := c.expect("safety number with " + peer + ": ")
	m := regexp.MustCompile(`: (\d{60})$`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("%s: no 60-digit number in %q", c.name, line)
	}
	return m[1]
}

func TestChatE2EConversationAndVerify(t *testing.T) {
	dir := t.TempDir()
	addr, _ := chatServer(t, filepath.Join(dir, "server"), "127.0.0.1:0")
	alice := startChat(t, addr, "alice", filepath.Join(dir, "alice.db"))
	alice.pos = 0
	alice.expect("end-to-end encryption: made this device's keys")
	bob := startChat(t, addr, "bob", filepath.Join(dir, "bob.db"))
	alice.say("@bob hello bob, this is sealed")
	bob.expect("alice: hello bob, this is sealed")
	alice.expect(`✓✓ to bob: "hello bob, this is sealed"`)
	bob.say("and so is this")
	alice.expect("bob: and so is this")
	for i := range 5 { // both directions, so both ratchets turn
		alice.say(fmt.Sprintf("@bob ping %d", i))
		bob.expect(fmt.Sprintf("alice: ping %d", i))
		bob.say(fmt.Sprintf("pong %d", i))
		alice.expect(fmt.Sprintf("bob: pong %d", i))
	}
	a, b := safetyNumber(t, alice, "bob"), safetyNumber(t, bob, "alice")
	if a != b {
		t.Fatalf("safety numbers differ: %s vs %s", a, b)
	}
	if out := alice.out.String() + bob.out.String(); strings.Contains(out, "did not decrypt") {
		t.Fatalf("a message did not decrypt:\n%s", out)
	}
}

// scanDir reports the files under dir (every file, read raw: Pebble's
// sstables, WAL, manifest) that hold any of needles.
func scanDir(t *testing.T, dir string, needles []string) []string {
	t.Helper()
	var hits []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, n := range needles {
			if bytes.Contains(b, []byte(n)) {
				hits = append(hits, fmt.Sprintf("%s holds %q", path, n))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits
}

// offlineConversation: bob publishes his keys and leaves; alice writes
// while he is away, so every message waits in his inbox on the server's
// disk; the server's files are scanned; then bob comes back and reads it
// all. It returns the scan's hits.
func offlineConversation(t *testing.T, plain bool) []string {
	dir := t.TempDir()
	data := filepath.Join(dir, "server")
	// No emergency ballast: it is a gigabyte of filler that the scan
	// would read four times over.
	noBallast := func(c *server.Config) { c.Ballast = -1 }
	addr, stop := chatServerWith(t, data, "127.0.0.1:0", noBallast)
	opt := func(c *chatConfig) { c.NoE2E = plain }
	bob := startChatWith(t, addr, "bob", filepath.Join(dir, "bob.db"), opt)
	bob.quit()
	alice := startChatWith(t, addr, "alice", filepath.Join(dir, "alice.db"), opt)
	var secrets []string
	for i := range 5 {
		s := fmt.Sprintf("the-vault-code-is-%d-zebra-%d", 7000+i, i*i)
		secrets = append(secrets, s)
		alice.say("@bob " + s)
		alice.expect(fmt.Sprintf(`  ✓ to bob: "%s"`, s))
	}
	alice.quit()
	hits := scanDir(t, data, secrets)
	stop() // and once more after the server flushed and closed its files
	hits = append(hits, scanDir(t, data, secrets)...)
	addr, _ = chatServerWith(t, data, addr, noBallast)
	bob = startChatWith(t, addr, "bob", filepath.Join(dir, "bob.db"), opt)
	for _, s := range secrets {
		bob.expect("alice: " + s)
	}
	return hits
}

// TestChatE2EServerNeverHoldsPlaintext: with encryption, no byte of the
// server's data folder holds a message; with --no-e2e the same scan finds
// them, so the scan can fail.
func TestChatE2EServerNeverHoldsPlaintext(t *testing.T) {
	if hits := offlineConversation(t, false); len(hits) > 0 {
		t.Fatalf("plaintext on the server's disk:\n%s", strings.Join(hits, "\n"))
	}
	if hits := offlineConversation(t, true); len(hits) == 0 {
		t.Fatal("control: the scan found no plaintext with --no-e2e either")
	}
}

// TestChatE2ERestartMidConversation: sessions survive a restart of
// either side; nothing is lost or read twice.
func TestChatE2ERestartMidConversation(t *testing.T) {
	dir := t.TempDir()
	addr, _ := chatServer(t, filepath.Join(dir, "server"), "127.0.0.1:0")
	alice := startChat(t, addr, "alice", filepath.Join(dir, "alice.db"))
	bob := startChat(t, addr, "bob", filepath.Join(dir, "bob.db"))
	alice.say("@bob before the restart")
	bob.expect("alice: before the restart")
	bob.say("got it")
	alice.expect("bob: got it")
	bob.quit()
	alice.say("@bob while you were away")
	alice.expect(`✓ to bob: "while you were away"`)
	bob = startChat(t, addr, "bob", filepath.Join(dir, "bob.db"))
	bob.pos = 0 // startChat waited past it
	bob.expect("end-to-end encryption: on")
	bob.expect("alice: while you were away")
	bob.say("back again")
	alice.expect("bob: back again")
	alice.quit()
	alice = startChat(t, addr, "alice", filepath.Join(dir, "alice.db"))
	alice.say("@bob after my restart")
	bob.expect("alice: after my restart")
	bob.say("still in sync")
	alice.expect("bob: still in sync")
	if out := alice.out.String() + bob.out.String(); strings.Contains(out, "did not decrypt") {
		t.Fatalf("a message did not decrypt:\n%s", out)
	}
}

// TestChatE2ELastResort: bob publishes one one-time key of each kind and
// stays offline (no refill); three contacts still start sessions (the
// later ones on the last-resort key) and bob reads all three.
func TestChatE2ELastResort(t *testing.T) {
	dir := t.TempDir()
	addr, _ := chatServer(t, filepath.Join(dir, "server"), "127.0.0.1:0")
	small := func(c *chatConfig) { c.Keys = device.Config{EC: 1, KEM: 1} }
	startChatWith(t, addr, "bob", filepath.Join(dir, "bob.db"), small).quit()
	for _, n := range []string{"carol", "dave", "erin"} {
		c := startChat(t, addr, n, filepath.Join(dir, n+".db"))
		c.say("@bob hi from " + n)
		c.expect(`✓ to bob: "hi from ` + n + `"`)
		c.quit()
	}
	// The directory has no one-time key of bob's left: the second and
	// third sessions started on his signed prekey and last-resort key.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	raw, err := client.Connect(ctx, client.Options{Addr: addr, Name: "bob", Password: "password-bob", Plaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	counts, err := raw.Conn().KeyCounts(ctx)
	raw.Close()
	if err != nil || counts.EC != 0 || counts.KEM != 0 {
		t.Fatalf("bob's one-time keys left: %+v %v", counts, err)
	}
	bob := startChatWith(t, addr, "bob", filepath.Join(dir, "bob.db"), small)
	for _, n := range []string{"carol", "dave", "erin"} {
		bob.expect(n + ": hi from " + n)
	}
	if strings.Contains(bob.out.String(), "did not decrypt") {
		t.Fatalf("a message did not decrypt:\n%s", bob.out.String())
	}
}

// TestChatE2EIdentityChange: bob reinstalls; alice is told loudly, her
// message waits until she accepts the new key, and then goes.
func TestChatE2EIdentityChange(t *testing.T) {
	dir := t.TempDir()
	addr, _ := chatServer(t, filepath.Join(dir, "server"), "127.0.0.1:0")
	alice := startChat(t, addr, "alice", filepath.Join(dir, "alice.db"))
	bob := startChat(t, addr, "bob", filepath.Join(dir, "bob.db"))
	alice.say("@bob first")
	bob.expect("alice: first")
	old := safetyNumber(t, alice, "bob")
	bob.quit()
	bob = startChat(t, addr, "bob", filepath.Join(dir, "bob-new-phone.db")) // same account, new keys
	bob.pos = 0
	bob.expect("made this device's keys")
	alice.expect("the server says bob has a new identity key")
	alice.say("@bob are you really bob?")
	alice.expect("bob's SAFETY NUMBER CHANGED")
	alice.expect(`"are you really bob?" waits`)
	alice.say("/verify bob")
	alice.expect("CHANGED and is not accepted yet")
	if n := safetyNumber(t, alice, "bob"); n == old {
		t.Fatal("the safety number did not change with the key")
	}
	if strings.Contains(bob.out.String(), "are you really bob?") {
		t.Fatal("a message went to an unaccepted key")
	}
	alice.say("/accept bob")
	alice.expect("accepted bob's new identity key")
	bob.expect("alice: are you really bob?")
	bob.say("yes, new phone")
	alice.expect("bob: yes, new phone")
}

// TestChatE2EGroup: a group of 20 where everyone writes once; each
// message is sealed once under its sender's key, and everyone reads
// everyone's. Removing a member rotates the keys and the rest go on.
func TestChatE2EGroup(t *testing.T) {
	if testing.Short() {
		t.Skip("20 chat clients")
	}
	const n = 20
	dir := t.TempDir()
	addr, _ := chatServer(t, filepath.Join(dir, "server"), "127.0.0.1:0")
	var names []string
	terms := make([]*chatTerm, n)
	for i := range n {
		names = append(names, fmt.Sprintf("member%02d", i))
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			terms[i] = startChat(t, addr, names[i], filepath.Join(dir, names[i]+".db"))
		}()
	}
	wg.Wait()
	terms[0].say("/group new team " + strings.Join(names[1:], " "))
	line := terms[0].expect("created group ")
	var group uint64
	fmt.Sscanf(line[strings.Index(line, "created group "):], "created group %d", &group)
	for i := 1; i < n; i++ {
		terms[i].expect(fmt.Sprintf("group %d (team)", group))
		terms[i].say(fmt.Sprintf("/g %d", group))
		terms[i].expect(fmt.Sprintf("talking to group %d", group))
	}
	for i := range n {
		terms[i].say(fmt.Sprintf("hello from %s", names[i]))
	}
	for i := range n {
		for j := range n {
			if i != j {
				terms[i].expectAnyOrder(fmt.Sprintf("%s in group %d: hello from %s", names[j], group, names[j]))
			}
		}
	}
	terms[0].say("/group remove " + names[n-1])
	for i := 0; i < n-1; i++ {
		terms[i].expect(fmt.Sprintf("removed %s", names[n-1]))
	}
	terms[1].say("after the removal")
	for i := 0; i < n-1; i++ {
		if i != 1 {
			terms[i].expectAnyOrder(fmt.Sprintf("%s in group %d: after the removal", names[1], group))
		}
	}
	for i, c := range terms {
		if strings.Contains(c.out.String(), "did not decrypt") {
			t.Fatalf("%s: a message did not decrypt:\n%s", names[i], c.out.String())
		}
	}
}

// TestChatE2EControlRefused: a sender-key distribution the server refuses
// for good (alice blocked bob, then writes in a group with him) is
// dropped and shown once, not resent at every start; the group message
// still reaches the others.
func TestChatE2EControlRefused(t *testing.T) {
	dir := t.TempDir()
	addr, _ := chatServer(t, filepath.Join(dir, "server"), "127.0.0.1:0")
	alice := startChat(t, addr, "alice", filepath.Join(dir, "alice.db"))
	bob := startChat(t, addr, "bob", filepath.Join(dir, "bob.db"))
	carol := startChat(t, addr, "carol", filepath.Join(dir, "carol.db"))
	alice.say("/group new trio bob carol")
	line := alice.expect("created group ")
	var group uint64
	fmt.Sscanf(line[strings.Index(line, "created group "):], "created group %d", &group)
	carol.expect(fmt.Sprintf("group %d (trio)", group))
	bob.expect(fmt.Sprintf("group %d (trio)", group))
	alice.say("/block bob")
	alice.expect("blocked bob")
	alice.say(fmt.Sprintf("/g %d", group))
	alice.expect(fmt.Sprintf("talking to group %d", group))
	alice.say("hello group")
	alice.expect(fmt.Sprintf("your key for group %d was not delivered to bob: you blocked them", group))
	carol.expect(fmt.Sprintf("alice in group %d: hello group", group))

	// After a restart nothing is resent: carol's reply arrives and the
	// refusal is not shown again.
	alice.quit()
	alice = startChat(t, addr, "alice", filepath.Join(dir, "alice.db"))
	alice.pos = 0
	alice.expect("end-to-end encryption: on")
	carol.say(fmt.Sprintf("/g %d", group))
	carol.expect(fmt.Sprintf("talking to group %d", group))
	carol.say("after your restart")
	alice.expect(fmt.Sprintf("carol in group %d: after your restart", group))
	if out := alice.out.String(); strings.Contains(out, "not delivered") || strings.Contains(out, "blocked this user") {
		t.Fatalf("the refused key was sent again after the restart:\n%s", out)
	}
}
