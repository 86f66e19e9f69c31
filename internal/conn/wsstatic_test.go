package conn

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestWSStatic serves files beside the upgrade: a plain GET gets the file
// (a large one too, bigger than a socket buffer takes at once), a missing
// one 404, a POST 405, and a request with Upgrade still upgrades.
func TestWSStatic(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	files := map[string][]byte{"/": []byte("<!doctype html>page"), "/big.js": big}
	s, _ := startWSServer(t, Config{WebSocket: WSConfig{Static: func(p string) ([]byte, string, bool) {
		b, ok := files[p]
		return b, "text/javascript; charset=utf-8", ok
	}}})
	get := func(req string) (*http.Response, []byte) {
		t.Helper()
		nc, err := net.Dial("tcp", s.WSAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := nc.Write([]byte(req)); err != nil {
			t.Fatal(err)
		}
		all, err := io.ReadAll(nc) // the server closes after one response
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(all)), nil)
		if err != nil {
			t.Fatalf("response: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		return resp, body
	}
	plain := func(method, path string) string {
		return method + " " + path + " HTTP/1.1\r\nHost: chat.test\r\nAccept: */*\r\n\r\n"
	}

	resp, body := get(plain("GET", "/?key=abc"))
	if resp.StatusCode != 200 || string(body) != "<!doctype html>page" {
		t.Fatalf("GET /: %d %q", resp.StatusCode, body)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("no content security policy: %q", csp)
	}
	resp, body = get(plain("GET", "/big.js"))
	if resp.StatusCode != 200 || !bytes.Equal(body, big) || resp.Header.Get("Content-Type") != "text/javascript; charset=utf-8" {
		t.Fatalf("GET /big.js: %d, %d bytes of %d, %q", resp.StatusCode, len(body), len(big), resp.Header.Get("Content-Type"))
	}
	if resp, body = get(plain("HEAD", "/big.js")); resp.StatusCode != 200 || len(body) != 0 {
		t.Fatalf("HEAD: %d with %d bytes", resp.StatusCode, len(body))
	}
	if resp, _ = get(plain("GET", "/nothing")); resp.StatusCode != 404 {
		t.Fatalf("GET /nothing: %d", resp.StatusCode)
	}
	if resp, _ = get(plain("POST", "/")); resp.StatusCode != 405 {
		t.Fatalf("POST /: %d", resp.StatusCode)
	}
	dialWS(t, s) // the upgrade is untouched
	if _, status := openWS(t, s, upgradeRequest("/chatd", "Upgrade:")); status != 400 {
		t.Fatalf("a request for the WebSocket path without Upgrade: %d, want the upgrade's 400", status)
	}
	if n := s.Snapshot().BadInput[ReasonUpgrade]; n != 1 {
		t.Fatalf("%d refused upgrades counted, want 1 (static requests are not)", n)
	}
}
