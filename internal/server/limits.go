package server

import (
	"net"
	"sync"
	"time"
)

// loginLimiter bounds password attempts, checked before any hashing so
// that guessing costs the guesser, not the server: per source address,
// every REGISTER, LOGIN and PASSWORD counts; per user name, failed ones
// do. Counts live in one-minute windows and are dropped with the window,
// so memory holds only the last minute's attempts.
type loginLimiter struct {
	perSource, perUser int

	mu      sync.Mutex
	minute  int64
	sources map[string]int
	users   map[string]int
}

func newLoginLimiter(perSource, perUser int) *loginLimiter {
	return &loginLimiter{perSource: perSource, perUser: perUser, sources: map[string]int{}, users: map[string]int{}}
}

func (l *loginLimiter) roll() {
	if m := time.Now().Unix() / 60; m != l.minute {
		l.minute = m
		clear(l.sources)
		clear(l.users)
	}
}

// allow records an attempt from source for name and reports whether it may
// proceed.
func (l *loginLimiter) allow(source, name string) bool {
	if l.perSource <= 0 && l.perUser <= 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.roll()
	l.sources[source]++
	if l.perSource > 0 && l.sources[source] > l.perSource {
		return false
	}
	return l.perUser <= 0 || name == "" || l.users[name] < l.perUser
}

// failed records a failed attempt for name.
func (l *loginLimiter) failed(name string) {
	if name == "" {
		return
	}
	l.mu.Lock()
	l.roll()
	l.users[name]++
	l.mu.Unlock()
}

// sourceOf is the address part of a remote address ("" if none).
func sourceOf(c *Conn) string {
	host, _, err := net.SplitHostPort(c.RemoteAddr())
	if err != nil {
		return c.RemoteAddr()
	}
	return host
}
