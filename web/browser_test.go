package web_test

import (
	"bufio"
	"context"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chatd/internal/account"
	"github.com/chatd/chatd/internal/server"
)

// TestBrowser runs test/browser.mjs: headless Chromium (Debian's, driven
// by playwright-core from `npm ci`) opens the page a real chatd serves on
// its WebSocket listener, and two people register, chat 1:1 and in a
// group (end-to-end encrypted by the pages) with ticks, presence and
// typing (a message to bob online gets SENT_DELIVERED, which the page asked
// for; the backlog gets SENT and a RECEIPT); one leaves and gets the backlog
// on return with the token the page kept; a page pinning another key
// refuses the server. It skips, saying what is missing, without node,
// chromium or web/node_modules. Screenshots go to $CHATD_BROWSER_SHOTS
// when set.
func TestBrowser(t *testing.T) {
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
	if _, err := os.Stat(filepath.Join("node_modules", "playwright-core", "package.json")); err != nil {
		t.Skip("web/node_modules/playwright-core missing: run `npm ci` in web/")
	}

	s, err := server.New(server.Config{
		Addr: "127.0.0.1:0", WSAddr: "127.0.0.1:0", DataDir: t.TempDir(),
		Hashing:   account.Hashing{Time: 1, MemoryKiB: 64},
		CacheSize: 8 << 20, MemTableSize: 4 << 20,
		// The first message opens a session (PQXDH) in bob's page before it
		// is acknowledged: on a loaded machine that can take longer than
		// the default live wait (250 ms), and the message would be stored
		// and answered SENT and RECEIPT, not the SENT_DELIVERED the test
		// checks.
		LiveWait: 5 * time.Second,
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

	shots := os.Getenv("CHATD_BROWSER_SHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	base := "http://" + s.WSAddr().String() + "/"
	cmd := exec.CommandContext(ctx, node, "test/browser.mjs", base, hex.EncodeToString(s.PublicKey()), shots)
	cmd.Env = append(os.Environ(), "CHATD_CHROMIUM="+chromium)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var last string
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			t.Log(sc.Text())
			last = sc.Text()
		}
	}()
	wg.Wait()
	err = cmd.Wait()
	if err != nil || strings.TrimSpace(last) != "PASS" {
		t.Fatalf("browser test: %v; last line %q; stderr:\n%s", err, last, stderr.String())
	}
}
