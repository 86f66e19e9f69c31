package main

import (
	"bytes"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/internal/account"
	"github.com/chatd/chatd/internal/server"
)

// chatServer runs a plaintext server on a random loopback port; stop ends
// it (also at the test's end).
func chatServer(t testing.TB, dir, addr string) (string, func()) {
	t.Helper()
	return chatServerWith(t, dir, addr, nil)
}

// chatServerWith is chatServer with the configuration changed by edit.
func chatServerWith(t testing.TB, dir, addr string, edit func(*server.Config)) (string, func()) {
	t.Helper()
	cfg := server.Config{
		Addr: addr, DataDir: dir, Plaintext: true,
		Hashing:   account.Hashing{Time: 1, MemoryKiB: 64},
		CacheSize: 8 << 20, MemTableSize: 4 << 20,
		ReceiptDelay: -1,
	}
	if edit != nil {
		edit(&cfg)
	}
	s, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		s.Close()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			s.Close()
			<-done
		})
	}
	t.Cleanup(stop)
	return s.Addr().String(), stop
}

// syncBuffer is the chat's output, read while it is written.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// chatTerm drives one chat session through its line interface.
type chatTerm struct {
	t    *testing.T
	name string
	in   *io.PipeWriter
	out  *syncBuffer
	pos  int // expect matches after this offset
	done chan error
}

func startChat(t *testing.T, addr, name, store string) *chatTerm {
	t.Helper()
	return startChatWith(t, addr, name, store, nil)
}

// startChatWith is startChat with the configuration changed by edit.
func startChatWith(t *testing.T, addr, name, store string, edit func(*chatConfig)) *chatTerm {
	t.Helper()
	r, w := io.Pipe()
	c := &chatTerm{t: t, name: name, in: w, out: &syncBuffer{}, done: make(chan error, 1)}
	cfg := chatConfig{
		Client: client.Options{Addr: addr, Name: name, Password: "password-" + name, Register: true, Plaintext: true,
			Backoff: client.Backoff{Min: 50 * time.Millisecond, Max: 200 * time.Millisecond}},
		Store: store, ConnectTimeout: 10 * time.Second,
	}
	if edit != nil {
		edit(&cfg)
	}
	go func() { c.done <- runChat(cfg, r, c.out) }()
	t.Cleanup(func() { c.quit() })
	c.expect("logged in as " + name)
	return c
}

func (c *chatTerm) say(line string) {
	c.t.Helper()
	if _, err := io.WriteString(c.in, line+"\n"); err != nil {
		c.t.Fatalf("%s: write %q: %v", c.name, line, err)
	}
}

// expect waits for want in the output after the last match, and returns
// the line it is on.
func (c *chatTerm) expect(want string) string {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out := c.out.String()
		if i := strings.Index(out[c.pos:], want); i >= 0 {
			start := strings.LastIndexByte(out[:c.pos+i], '\n') + 1
			end := strings.IndexByte(out[c.pos+i:], '\n')
			if end < 0 {
				end = len(out) - c.pos - i
			}
			c.pos += i + len(want)
			return out[start : c.pos-len(want)+end]
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: no %q in output after offset %d:\n%s", c.name, want, c.pos, out)
		}
		time.Sleep(10 * time.Millisecond) // polling the output, bounded by the deadline
	}
}

// expectAnyOrder waits for want anywhere in the output (lines that
// arrive in any order, as group messages from several senders do); it
// does not move the match offset.
func (c *chatTerm) expectAnyOrder(want string) {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(c.out.String(), want) {
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: no %q in output:\n%s", c.name, want, c.out.String())
		}
		time.Sleep(10 * time.Millisecond) // polling the output, bounded by the deadline
	}
}

// quit closes input and waits for the session to end.
func (c *chatTerm) quit() error {
	c.in.Close()
	select {
	case err := <-c.done:
		c.done <- err
		return err
	case <-time.After(10 * time.Second):
		c.t.Errorf("%s: chat did not end after its input closed", c.name)
		return nil
	}
}

func TestChatTicksDefaultReplyAndRead(t *testing.T) {
	dir := t.TempDir()
	addr, _ := chatServer(t, filepath.Join(dir, "server"), "127.0.0.1:0")
	alice := startChat(t, addr, "alice", filepath.Join(dir, "alice.db"))
	bob := startChat(t, addr, "bob", filepath.Join(dir, "bob.db"))

	bob.say("/read")
	bob.expect("no contact yet")
	bob.say("anyone there?")
	bob.expect("no contact yet")

	alice.say("/to bob")
	alice.expect("talking to bob")
	alice.say("hello bob, lunch at noon today?")
	// ✓ then ✓✓, or ✓✓ alone when the receipt overtakes SENT (the
	// server may deliver before SENT reaches alice); never ✓ after ✓✓.
	alice.expect(`✓✓ to bob: "hello bob, lunch at noon today?"`)

	if out := alice.out.String(); strings.Contains(out[alice.pos:], `  ✓ to bob: "hello bob`) {
		t.Fatalf("✓ after ✓✓:\n%s", out)
	}
	bob.expect("alice: hello bob, lunch at noon today?")
	bob.expect("(replies go to alice")
	bob.say("yes, see you there") // no /to: the reply goes to the last writer
	alice.expect("bob: yes, see you there")
	bob.expect(`✓✓ to alice: "yes, see you there"`)

	alice.say("second message")
	alice.expect(`✓✓ to bob: "second message"`)
	bob.expect("alice: second message")
	bob.say("/read")
	bob.expect("marked 2 message(s) from alice read")
	got := alice.expect("✓✓ read by bob: ") + "\n" + alice.expect("✓✓ read by bob: ")
	if !strings.Contains(got, `"hello bob, lunch at noon today?"`) || !strings.Contains(got, `"second message"`) {
		t.Fatalf("read ticks do not name both messages:\n%s", got)
	}
	bob.say("/read")
	bob.expect("nothing unread from alice")
	if out := alice.out.String(); strings.Contains(out, "(replies go to") {
		t.Fatalf("alice chose bob with /to, yet replies moved:\n%s", out)
	}
}

// TestChatOfflineSendTick: a message to someone offline gets its single
// tick at once, the second when they come online.
func TestChatOfflineSendTick(t *testing.T) {
	dir := t.TempDir()
	addr, _ := chatServer(t, filepath.Join(dir, "server"), "127.0.0.1:0")
	bob := startChat(t, addr, "bob", filepath.Join(dir, "bob.db"))
	bob.quit()
	alice := startChat(t, addr, "alice", filepath.Join(dir, "alice.db"))
	alice.say("@bob are you there")
	alice.expect(`  ✓ to bob: "are you there"`)
	if strings.Contains(alice.out.String(), "✓✓ to bob") {
		t.Fatalf("delivered tick while bob is offline:\n%s", alice.out.String())
	}
	bob = startChat(t, addr, "bob", filepath.Join(dir, "bob.db"))
	bob.expect("alice: are you there")
	alice.expect(`✓✓ to bob: "are you there"`)
}

// TestChatHistoryAndSearchAfterRestart: messages are kept on the client;
// after a restart /history and /search find them, even with the server
// gone (the server keeps nothing once delivered, and never sees a search).
func TestChatHistoryAndSearchAfterRestart(t *testing.T) {
	dir := t.TempDir()
	addr, stop := chatServer(t, filepath.Join(dir, "server"), "127.0.0.1:0")
	alice := startChat(t, addr, "alice", filepath.Join(dir, "alice.db"))
	bob := startChat(t, addr, "bob", filepath.Join(dir, "bob.db"))
	alice.say("@bob the quarterly report is attached")
	bob.expect("alice: the quarterly report is attached")
	bob.say("thanks, reading the Report now")
	alice.expect("bob: thanks, reading the Report now")
	alice.say("@bob unrelated note")
	bob.expect("alice: unrelated note")
	alice.expect(`✓✓ to bob: "unrelated note"`)
	if err := bob.quit(); err != nil {
		t.Fatal(err)
	}

	bob = startChat(t, addr, "bob", filepath.Join(dir, "bob.db"))
	bob.say("/history alice")
	bob.expect("-- last 3 with alice --")
	bob.expect("alice: the quarterly report is attached")
	bob.expect("me: thanks, reading the Report now  ✓✓")
	bob.expect("alice: unrelated note")

	// With the server gone, the store answers alone: search never goes to
	// the server, and names come from the stored contacts.
	stop()
	bob.expect("connection lost")
	bob.say("/search report")
	bob.expect(`-- 2 message(s) match "report" --`)
	bob.expect("alice: the quarterly report is attached")
	bob.expect("me → alice: thanks, reading the Report now")
	bob.say("/search quarterly report")
	bob.expect(`-- 1 message(s) match "quarterly report" --`)
	bob.say("/search rep*")
	bob.expect(`-- 2 message(s) match "rep*" --`)
	bob.say("/search nothing-like-this")
	bob.expect(`no messages match "nothing-like-this"`)
	bob.say("/history alice 1")
	bob.expect("-- last 1 with alice --")
	bob.expect("alice: unrelated note")
}
