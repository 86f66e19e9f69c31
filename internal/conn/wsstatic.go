package conn

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
)

// StaticFunc gives the file a plain GET of path asks for: its bytes, its
// content type, and whether there is one.
type StaticFunc func(path string) (body []byte, contentType string, ok bool)

// The WebSocket listener also serves the browser client's files
// (WSConfig.Static), so that the page and its ws:// share one origin and
// the default origin check (Host) passes with no configuration. It is the
// least HTTP that does: GET and HEAD, one response per connection
// (Connection: close), no ranges, no conditional requests. Anything
// bigger (TLS, caching, compression) belongs to the proxy in front.

// staticHeaders keep the page to its own files: scripts and styles from
// this origin only, and sockets to any ws:// or wss:// (the page takes a
// server URL in ?ws=).
const staticHeaders = "Content-Security-Policy: default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'\r\n" +
	"X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\nCache-Control: no-cache\r\nConnection: close\r\n"

// serveStatic answers head if it asks for no upgrade, is not for the
// WebSocket path and a StaticFunc is set, then closes the connection; it
// reports whether it did.
func (s *Server[T]) serveStatic(c *Conn[T], head []byte) bool {
	get := s.cfg.WebSocket.Static
	if get == nil || hasUpgrade(head) {
		return false
	}
	line, _, _ := bytes.Cut(head, []byte("\r\n"))
	method, rest, _ := strings.Cut(string(line), " ")
	target, _, _ := strings.Cut(rest, " ")
	path, _, _ := strings.Cut(target, "?")
	if path == s.cfg.WebSocket.Path {
		return false // a bad upgrade request: the upgrade answers it (400)
	}
	var resp []byte
	switch body, ctype, ok := get(path); {
	case method != http.MethodGet && method != http.MethodHead:
		resp = []byte("HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD\r\nContent-Length: 0\r\n" + staticHeaders + "\r\n")
	case !ok:
		resp = []byte("HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 10\r\n" + staticHeaders + "\r\nnot found\n")
	default:
		resp = []byte("HTTP/1.1 200 OK\r\nContent-Type: " + ctype + "\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n" + staticHeaders + "\r\n")
		if method == http.MethodGet {
			resp = append(resp, body...)
		}
	}
	// The netpoll writer, not writeHTTP: a file may not fit the socket
	// buffer at once, and Flush waits (bounded by the write timeout) until
	// it is all sent.
	w := c.nc.Writer()
	if _, err := w.WriteBinary(resp); err == nil {
		w.Flush()
	}
	c.nc.Reader().Release()
	c.Close()
	return true
}

// hasUpgrade reports whether a request head carries an Upgrade header.
func hasUpgrade(head []byte) bool {
	for _, l := range bytes.Split(head, []byte("\r\n"))[1:] {
		name, _, ok := bytes.Cut(l, []byte(":"))
		if ok && strings.EqualFold(strings.TrimSpace(string(name)), "upgrade") {
			return true
		}
	}
	return false
}
