package conn

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/cloudwego/netpoll"
	"github.com/gobwas/ws"
)

var endOfHead = []byte("\r\n\r\n")

// readHead collects the HTTP upgrade request and answers it. It never
// waits for the rest of a head: what arrived is kept in w.head and the turn
// ends, so a client that sends half a request holds a buffer, not a pool
// goroutine, until the auth deadline closes it. It reports whether the
// connection is upgraded; bytes after the head (frames sent without
// waiting for the 101) stay in r.
func (s *Server[T]) readHead(c *Conn[T], r netpoll.Reader) bool {
	w := c.ws
	if w.head == nil {
		w.head = getBuf()
	}
	h := *w.head
	old := len(h)
	n := min(r.Len(), maxHead-old)
	p, err := r.Peek(n)
	if err != nil {
		s.readFailed(c, err)
		return false
	}
	from := max(0, old-len(endOfHead)+1)
	h = append(h, p...)
	*w.head = h
	i := bytes.Index(h[from:], endOfHead)
	if i < 0 {
		if len(h) >= maxHead {
			s.refuseUpgrade(c, http.StatusRequestHeaderFieldsTooLarge, "upgrade request over 8 KiB")
			return false
		}
		r.Skip(n)
		r.Release()
		return false
	}
	end := from + i + len(endOfHead)
	r.Skip(end - old)
	r.Release()
	if s.serveStatic(c, h[:end]) {
		putBuf(w.head)
		w.head = nil
		return false
	}
	resp, err := s.upgrade(h[:end])
	putBuf(w.head)
	w.head = nil
	if err != nil {
		s.stats.bad.note(s.log, ReasonUpgrade, c.RemoteAddr, err.Error())
		c.writeHTTP(resp, false)
		c.nc.Reader().Release()
		c.Close()
		return false
	}
	if err := c.writeHTTP(resp, true); err != nil {
		s.closeQuiet(c)
		return false
	}
	return true
}

// refuseUpgrade answers a request that cannot be upgraded with an HTTP
// error and closes.
func (s *Server[T]) refuseUpgrade(c *Conn[T], status int, why string) {
	s.stats.bad.note(s.log, ReasonUpgrade, c.RemoteAddr, why)
	c.writeHTTP(httpError(status), false)
	c.nc.Reader().Release()
	c.Close()
}

func httpError(status int) []byte {
	return []byte("HTTP/1.1 " + strconv.Itoa(status) + " " + http.StatusText(status) +
		"\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
}

// upgrade checks a whole request head with gobwas/ws and returns the
// response to send: 101 on success, else the HTTP error.
func (s *Server[T]) upgrade(head []byte) ([]byte, error) {
	chk := upgradeCheck{cfg: &s.cfg.WebSocket}
	u := ws.Upgrader{
		ReadBufferSize:  maxHead,
		Protocol:        chk.protocol,
		OnRequest:       chk.request,
		OnHost:          chk.host,
		OnHeader:        chk.header,
		OnBeforeUpgrade: chk.before,
	}
	var out bytes.Buffer
	_, err := u.Upgrade(struct {
		io.Reader
		io.Writer
	}{bytes.NewReader(head), &out})
	return out.Bytes(), err
}

// upgradeCheck holds what chatd checks in an upgrade request beyond
// RFC 6455's own rules (which gobwas/ws applies).
type upgradeCheck struct {
	cfg           *WSConfig
	hostSeen      string
	origin        string
	originSeen    bool
	protocolAgree bool
}

func (u *upgradeCheck) protocol(p []byte) bool {
	if string(p) == Subprotocol {
		u.protocolAgree = true
	}
	return u.protocolAgree
}

func (u *upgradeCheck) request(uri []byte) error {
	path, _, _ := strings.Cut(string(uri), "?")
	if path != u.cfg.Path {
		return ws.RejectConnectionError(ws.RejectionStatus(http.StatusNotFound),
			ws.RejectionReason("no websocket endpoint at "+path))
	}
	return nil
}

func (u *upgradeCheck) host(h []byte) error {
	u.hostSeen = string(h)
	return nil
}

func (u *upgradeCheck) header(k, v []byte) error {
	if string(k) == "Origin" || strings.EqualFold(string(k), "origin") {
		u.origin, u.originSeen = string(v), true
	}
	return nil
}

// before runs once every header is read: the subprotocol and the origin
// decide.
func (u *upgradeCheck) before() (ws.HandshakeHeader, error) {
	if !u.protocolAgree {
		return nil, ws.RejectConnectionError(ws.RejectionStatus(http.StatusBadRequest),
			ws.RejectionReason("subprotocol "+Subprotocol+" required"))
	}
	if u.originSeen && !u.originAllowed() {
		return nil, ws.RejectConnectionError(ws.RejectionStatus(http.StatusForbidden),
			ws.RejectionReason("origin "+u.origin+" not allowed"))
	}
	return nil, nil
}

// originAllowed applies WSConfig.Origins. Browsers send Origin with every
// WebSocket request and scripts cannot change it; the check keeps other
// sites' pages from opening sockets (each costs the server a connection
// and counts against a user's limits). Login happens inside Noise and no
// cookie is ever read, so it guards resources, not credentials.
func (u *upgradeCheck) originAllowed() bool {
	if len(u.cfg.Origins) == 0 {
		o, err := url.Parse(u.origin)
		return err == nil && o.Host != "" && strings.EqualFold(o.Host, u.hostSeen)
	}
	for _, a := range u.cfg.Origins {
		if a == "*" || strings.EqualFold(a, u.origin) {
			return true
		}
	}
	return false
}
