package main

import (
	"bytes"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
)

// TestChatSaysWhatItWaitsFor: a server restart is never silent: the chat
// says the connection was lost, when it retries, and when it is back.
func TestChatSaysWhatItWaitsFor(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "server")
	addr, stop := chatServer(t, data, "127.0.0.1:0")
	alice := startChat(t, addr, "alice", filepath.Join(dir, "alice.db"))
	alice.pos = 0 // startChat waited past these
	alice.expect("connecting to " + addr + "...")
	alice.expect("connected")
	stop()
	line := alice.expect("connection lost")
	if !regexp.MustCompile(`reconnecting in \d+\.\d s`).MatchString(line) {
		t.Fatalf("no delay in %q", line)
	}
	alice.expect("reconnecting in") // the next attempts say so too
	chatServer(t, data, addr)       // back on the same address and data
	alice.expect("connected")
	alice.say("@alice2 hi") // the session works again (and says unknown names clearly)
	alice.expect(`no user "alice2" (names are case-sensitive)`)
}

// TestChatLoginErrors: a refused login says what to do next.
func TestChatLoginErrors(t *testing.T) {
	dir := t.TempDir()
	addr, _ := chatServer(t, filepath.Join(dir, "server"), "127.0.0.1:0")
	startChat(t, addr, "alice", filepath.Join(dir, "alice.db")).quit()
	try := func(name, password string, register bool) string {
		t.Helper()
		cfg := chatConfig{
			Client: client.Options{Addr: addr, Name: name, Password: password, Register: register, Plaintext: true},
			Store:  filepath.Join(dir, "x.db"), ConnectTimeout: 10 * time.Second,
		}
		err := runChat(cfg, strings.NewReader(""), &bytes.Buffer{})
		if err == nil {
			t.Fatalf("%s/%s register=%v: logged in", name, password, register)
		}
		return err.Error()
	}
	for _, tc := range []struct {
		name, password string
		register       bool
		want           string
	}{
		{"carol", "password-carol", false, "add --register"},
		{"Alice", "password-alice", false, `names are case-sensitive and lower case: try "alice"`},
		{"alice", "someone-else", true, `the name "alice" is taken`},
		{"alice", "wrong-password", false, "wrong password for alice"},
	} {
		if got := try(tc.name, tc.password, tc.register); !strings.Contains(got, tc.want) {
			t.Errorf("%s register=%v: %q, want it to say %q", tc.name, tc.register, got, tc.want)
		}
	}
	// Registering again as oneself with the right password logs in.
	startChat(t, addr, "alice", filepath.Join(dir, "alice.db"))
}

func TestPasswordRule(t *testing.T) {
	if err := checkPassword("short", true); err == nil || !strings.Contains(err.Error(), "8 characters or more") {
		t.Fatalf("register with a short password: %v", err)
	}
	if err := checkPassword("short", false); err == nil || !strings.Contains(err.Error(), "8 characters or more") {
		t.Fatalf("login with a short password: %v", err)
	}
	if err := checkPassword("long enough", true); err != nil {
		t.Fatal(err)
	}
}

// TestChatGroupEventsNameWho: group changes say who did what to whom,
// and creating a group lists its members.
func TestChatGroupEventsNameWho(t *testing.T) {
	dir := t.TempDir()
	addr, _ := chatServer(t, filepath.Join(dir, "server"), "127.0.0.1:0")
	alice := startChat(t, addr, "alice", filepath.Join(dir, "alice.db"))
	bob := startChat(t, addr, "bob", filepath.Join(dir, "bob.db"))
	startChat(t, addr, "carol", filepath.Join(dir, "carol.db")).quit()
	alice.say("/group new lunch bob")
	line := alice.expect("created group ")
	if !strings.Contains(line, "(lunch) with alice (admin), bob") {
		t.Fatalf("create does not list the members: %q", line)
	}
	bob.expect("alice created it with ")
	alice.say("/group add carol")
	bob.expect("(lunch): alice added carol")
	alice.say("/group remove carol")
	bob.expect("(lunch): alice removed carol")
	alice.say("pizza?")
	bob.expect("alice in group ")
	bob.expect("(replies go to group")
	alice.expect("✓✓ to bob in group ")
}

// TestChatHelp: -h shows flags with sensible argument names, every
// environment variable, and never a password from the environment.
func TestChatHelp(t *testing.T) {
	t.Setenv("CHATD_PASSWORD", "hunter2-secret")
	var out bytes.Buffer
	fs, _ := chatFlags(&out)
	if err := fs.Parse([]string{"-h"}); err == nil {
		t.Fatal("-h did not stop parsing")
	}
	help := out.String()
	for _, want := range []string{"-server-key hex", "-store file", "-user name", "CHATD_PASSWORD", "CHATD_SERVER_KEY",
		"CHATD_STORE", "XDG_DATA_HOME", "/history", "/search", "8 characters or more", "case-sensitive"} {
		if !strings.Contains(help, want) {
			t.Errorf("help lacks %q:\n%s", want, help)
		}
	}
	if strings.Contains(help, "hunter2") {
		t.Fatalf("help shows the password from the environment:\n%s", help)
	}
}

// TestChatBlock: /block stops bob's messages reaching alice while bob
// sees them sent; alice's own message to bob is refused until /unblock.
func TestChatBlock(t *testing.T) {
	dir := t.TempDir()
	addr, _ := chatServer(t, filepath.Join(dir, "server"), "127.0.0.1:0")
	alice := startChat(t, addr, "alice", filepath.Join(dir, "alice.db"))
	bob := startChat(t, addr, "bob", filepath.Join(dir, "bob.db"))
	alice.say("/blocked")
	alice.expect("you have blocked no one")
	alice.say("/block bob")
	alice.expect("blocked bob")
	alice.say("/blocked")
	alice.expect("blocked: bob")
	bob.say("@alice are you there?")
	bob.expect(`✓ to alice: "are you there?"`)
	alice.say("@bob hello")
	alice.expect("✗ not sent")
	alice.expect("/unblock them first")
	alice.say("/unblock bob")
	alice.expect("unblocked bob")
	bob.say("@alice now?")
	alice.expect("bob: now?")
	if out := alice.out.String(); strings.Contains(out, "are you there?") {
		t.Fatalf("alice got a message bob sent while blocked:\n%s", out)
	}
}
