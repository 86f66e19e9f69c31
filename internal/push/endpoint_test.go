package push

import (
	"errors"
	"testing"
)

func TestPolicyCheck(t *testing.T) {
	open := &Policy{}
	listed := &Policy{AllowHosts: []string{"fcm.googleapis.com", "*.push.apple.com"}}
	loop := &Policy{AllowHTTPLoopback: true, AllowHosts: []string{"fcm.googleapis.com"}}
	for _, c := range []struct {
		p        *Policy
		endpoint string
		want     error
	}{
		{open, "https://fcm.googleapis.com/fcm/send/abc", nil},
		{open, "https://updates.push.services.mozilla.com/wpush/v2/x", nil},
		{open, "http://fcm.googleapis.com/fcm/send/abc", ErrNotHTTPS},
		{open, "ftp://fcm.googleapis.com/x", ErrNotHTTPS},
		{open, "fcm.googleapis.com/x", ErrNotHTTPS},
		{open, "https://user:pw@fcm.googleapis.com/x", ErrNotHTTPS},
		{open, "http://127.0.0.1:8080/push/a", ErrNotHTTPS}, // loopback needs the setting
		{open, "https://127.0.0.1/push", ErrHostRefused},
		{open, "https://10.1.2.3/push", ErrHostRefused},
		{open, "https://[fe80::1]/push", ErrHostRefused},
		{open, "https://169.254.169.254/latest", ErrHostRefused},
		{listed, "https://fcm.googleapis.com/fcm/send/abc", nil},
		{listed, "https://web.push.apple.com/QG", nil},
		{listed, "https://push.apple.com/QG", ErrHostRefused}, // "*." wants a subdomain
		{listed, "https://evil.example/fcm.googleapis.com", ErrHostRefused},
		{listed, "https://fcm.googleapis.com.evil.example/", ErrHostRefused},
		{loop, "http://127.0.0.1:8080/push/a", nil},
		{loop, "http://localhost:8080/push/a", nil},
		{loop, "http://[::1]:8080/push/a", nil},
		{loop, "http://192.168.1.1/push/a", ErrNotHTTPS},
		{loop, "https://other.example/", ErrHostRefused},
	} {
		err := c.p.Check(c.endpoint)
		if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("Check(%q) with %+v = %v, want %v", c.endpoint, *c.p, err, c.want)
		}
	}
}

// The dialer refuses what a public host name may resolve to inside the
// server's network.
func TestPolicyDialControl(t *testing.T) {
	for _, c := range []struct {
		p    *Policy
		addr string
		ok   bool
	}{
		{&Policy{}, "8.8.8.8:443", true},
		{&Policy{}, "127.0.0.1:443", false},
		{&Policy{}, "10.0.0.1:443", false},
		{&Policy{}, "[::1]:443", false},
		{&Policy{}, "100.64.1.1:443", false},
		{&Policy{}, "[::ffff:10.0.0.1]:443", false},
		{&Policy{}, "[64:ff9b::a00:1]:443", false},
		{&Policy{}, "[2001:4860:4860::8888]:443", true},
		{&Policy{AllowHTTPLoopback: true}, "127.0.0.1:80", true},
		{&Policy{AllowHTTPLoopback: true}, "192.168.0.1:80", false},
	} {
		err := c.p.control("tcp", c.addr, nil)
		if (err == nil) != c.ok || err != nil && !errors.Is(err, ErrHostRefused) {
			t.Errorf("control(%s) with %+v = %v", c.addr, *c.p, err)
		}
	}
}
