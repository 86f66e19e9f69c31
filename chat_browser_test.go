package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chatd/chatd/internal/account"
	"github.com/chatd/chatd/internal/server"
)

// TestChatWithBrowserPage: `chatd chat` (alice) and the browser page
// (bob and carol, in headless Chromium through web/test/interop.mjs)
// exchange end-to-end encrypted messages through one real server: chat
// starts the session with bob's page, carol's page starts one with chat,
// both ways each time; a message chat sends while bob's page is away is
// scanned for on the server's disk and not found, then read on return;
// carol's page and chat show the same safety number; and the three talk
// in a group, each message sealed once with the sender's sender key
// (PROTOCOL.md 14.7) and read by the two others; and bob's page refills
// its one-time prekeys when KEYS_LOW says so. It skips, as
// web/TestBrowser does, without node, chromium or web/node_modules.
func TestChatWithBrowserPage(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the browser test takes a minute")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not found: the browser test needs Node 20+ (and chromium, and `npm ci` in web/)")
	}
	chromium := os.Getenv("CHATD_CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Skipf("no chromium at %s: apt-get install chromium, or set CHATD_CHROMIUM", chromium)
	}
	if _, err := os.Stat(filepath.Join("web", "node_modules", "playwright-core", "package.json")); err != nil {
		t.Skip("web/node_modules/playwright-core missing: run `npm ci` in web/")
	}

	dir := t.TempDir()
	data := filepath.Join(dir, "server")
	s, err := server.New(server.Config{
		Addr: "127.0.0.1:0", WSAddr: "127.0.0.1:0", DataDir: data, Plaintext: true,
		Hashing:   account.Hashing{Time: 1, MemoryKiB: 64},
		CacheSize: 8 << 20, MemTableSize: 4 << 20, ReceiptDelay: -1, Ballast: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		s.Close()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	t.Cleanup(func() {
		s.Close()
		<-done
	})
	alice := startChat(t, s.Addr().String(), "alice", filepath.Join(dir, "alice.db"))

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "test/interop.mjs", "http://"+s.WSAddr().String()+"/", hex.EncodeToString(s.PublicKey()))
	cmd.Dir = "web"
	cmd.Env = append(os.Environ(), "CHATD_CHROMIUM="+chromium)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			t.Log(sc.Text())
			lines <- sc.Text()
		}
	}()
	fail := func(format string, args ...any) {
		t.Helper()
		cancel()
		cmd.Wait()
		t.Fatalf("%s; stderr:\n%s", fmt.Sprintf(format, args...), stderr.String())
	}
	// until waits for the page's line starting with prefix and returns it.
	until := func(prefix string) string {
		t.Helper()
		for l := range lines {
			if strings.HasPrefix(l, prefix) {
				return l
			}
			if strings.HasPrefix(l, "FAIL") {
				fail("browser: %s", l)
			}
		}
		fail("the browser script ended before %q", prefix)
		return ""
	}
	tell := func(what string) {
		t.Helper()
		if _, err := io.WriteString(stdin, "go "+what+"\n"); err != nil {
			fail("tell the browser %q: %v", what, err)
		}
	}

	until("STEP bob-ready")
	alice.say("@bob hello bob from chatd chat")
	alice.expect(`✓ to bob: "hello bob from chatd chat"`)
	until("STEP bob-replied")
	alice.expect("bob: hi alice, sealed by the browser")

	tell("bob-offline")
	until("STEP bob-closed")
	const secret = "the-vault-code-is-7001-zebra"
	alice.say("@bob " + secret)
	alice.expect(`✓ to bob: "` + secret + `"`)
	// The message now waits in bob's inbox on the server's disk.
	needles := []string{secret, "hello bob from chatd chat", "hi alice, sealed by the browser"}
	if hits := scanDir(t, data, needles); len(hits) > 0 {
		fail("plaintext on the server's disk:\n%s", strings.Join(hits, "\n"))
	}
	tell("bob-return")
	until("STEP bob-read-backlog")

	until("STEP carol-said")
	alice.expect("carol: carol starts this session")
	alice.say("@carol welcome carol")
	alice.expect("carol: and the ratchet turns")
	page := strings.ReplaceAll(strings.TrimPrefix(until("SAFETY carol alice "), "SAFETY carol alice "), " ", "")
	if chat := safetyNumber(t, alice, "carol"); chat != page {
		fail("safety numbers differ: chat %s, page %s", chat, page)
	}
	group := strings.TrimPrefix(until("STEP group "), "STEP group ")
	alice.expectAnyOrder(fmt.Sprintf("carol in group %s: hello team from the page", group))
	until("STEP bob-said-to-group")
	alice.expectAnyOrder(fmt.Sprintf("bob in group %s: bob to the team", group))
	alice.say("/g " + group)
	alice.expect("talking to group " + group)
	alice.say("hello team from chat")

	until("STEP drain-bob")
	dave := signInTo(ctx, t, s.Addr().String(), "dave", true)
	defer dave.Close()
	bobID, err := dave.LookupName(ctx, "bob")
	if err != nil {
		fail("lookup bob: %v", err)
	}
	// bob's page uploaded 10 one-time KEM keys and two are taken; eight
	// more fetches cross the KEYS_LOW threshold (fewer than 3) whatever
	// the exact count, within the 10-per-target fetch limit.
	for range 8 {
		if _, err := dave.FetchKeys(ctx, bobID, 1); err != nil {
			fail("fetch bob's keys: %v", err)
		}
	}
	tell("drained")
	until("REFILL ")
	if l := until("PASS"); l != "PASS" {
		fail("last line %q", l)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("browser script: %v; stderr:\n%s", err, stderr.String())
	}
	if strings.Contains(alice.out.String(), "could not decrypt") {
		t.Fatalf("chat could not decrypt a page's message:\n%s", alice.out.String())
	}
	needles = append(needles, "carol starts this session", "welcome carol", "and the ratchet turns",
		"hello team from the page", "bob to the team", "hello team from chat")
	if hits := scanDir(t, data, needles); len(hits) > 0 {
		t.Fatalf("plaintext on the server's disk:\n%s", strings.Join(hits, "\n"))
	}
}
