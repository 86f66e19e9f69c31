package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestChatSessions: /label names the device, /sessions lists both of
// alice's devices with their labels and which is this one, /end N logs
// the other out, and /end of this one ends the chat with "session
// revoked".
func TestChatSessions(t *testing.T) {
	dir := t.TempDir()
	addr, _ := chatServer(t, filepath.Join(dir, "server"), "127.0.0.1:0")
	phone := startChat(t, addr, "alice", filepath.Join(dir, "phone.db"))
	phone.say("/label phone\x1b[2J")
	phone.expect(`this session is now labelled "phone\x1b[2J"`)
	laptop := startChat(t, addr, "alice", filepath.Join(dir, "laptop.db")) // a second login: phone is kicked
	if err := phone.quit(); err == nil || !strings.Contains(err.Error(), "logged in elsewhere") {
		t.Fatalf("the phone's chat ended with %v", err)
	}
	laptop.say("/end 1")
	laptop.expect("/sessions first")
	laptop.say("/label laptop")
	laptop.expect(`labelled "laptop"`)
	laptop.say("/sessions")
	laptop.expect("your sessions")
	laptop.expect("/end N logs device N out")
	out := laptop.out.String()
	listing := out[strings.LastIndex(out, "your sessions"):]
	if !regexp.MustCompile(`\d\. laptop \(this one\), last used \d\d:\d\d from 127\.0\.0\.1:\d+, logged in`).MatchString(listing) {
		t.Fatalf("no line for this device in:\n%s", listing)
	}
	m := regexp.MustCompile(`(\d)\. phone\?\[2J, last used \d\d:\d\d from 127\.0\.0\.1:\d+`).FindStringSubmatch(listing)
	if m == nil {
		t.Fatalf("no line for the phone (its escape shown as ?) in:\n%s", listing)
	}
	laptop.say("/end 3")
	laptop.expect("/end N, with N from 1 to 2")
	laptop.say("/end " + m[1])
	laptop.expect("ended session " + m[1] + " (phone?[2J): that device is logged out")

	// Only the laptop's session is left.
	laptop.say("/sessions")
	laptop.expect("your sessions")
	laptop.expect("/end N logs device N out")
	out = laptop.out.String()
	listing = out[strings.LastIndex(out, "your sessions"):]
	if strings.Contains(listing, "phone") || !strings.Contains(listing, "1. laptop (this one)") || strings.Contains(listing, "2.") {
		t.Fatalf("after /end the listing is:\n%s", listing)
	}

	laptop.say("/sessions") // /end refers to the latest listing
	laptop.expect("/end N logs device N out")
	laptop.say("/end 1")
	laptop.expect("ended this session")
	select {
	case err := <-laptop.done:
		laptop.done <- err
		if err == nil || !strings.Contains(err.Error(), "session revoked") {
			t.Fatalf("the chat whose session ended: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the chat did not end with its session")
	}
}
