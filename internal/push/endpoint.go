package push

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
)

// Why an endpoint is refused. The server answers ERROR 90 and 91 for them.
var (
	ErrNotHTTPS    = errors.New("push: endpoint is not an https URL")
	ErrHostRefused = errors.New("push: endpoint host is not an allowed push service")
	ErrBadKey      = errors.New("push: p256dh is not a P-256 public key")
)

// MaxEndpoint bounds an endpoint URL's length.
const MaxEndpoint = 2048

// Policy says which endpoints the server will POST to, so that a client
// cannot make it send requests to arbitrary hosts (its own network's
// above all).
type Policy struct {
	// AllowHosts, when not empty, lists the push services' host names an
	// endpoint may name: "fcm.googleapis.com" matches that host only,
	// "*.push.apple.com" any host under push.apple.com. Empty: any host.
	AllowHosts []string
	// AllowHTTPLoopback lets an endpoint be http:// to a loopback address
	// (127.0.0.0/8, ::1, localhost): a local test receiver. Off, every
	// endpoint is https and no request goes to a loopback address.
	AllowHTTPLoopback bool
}

// Check reports whether endpoint may be subscribed: ErrNotHTTPS or
// ErrHostRefused (wrapped, with the reason) if not.
func (p *Policy) Check(endpoint string) error {
	if len(endpoint) > MaxEndpoint {
		return fmt.Errorf("%w: longer than %d bytes", ErrNotHTTPS, MaxEndpoint)
	}
	u, err := url.Parse(endpoint)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Opaque != "" {
		return fmt.Errorf("%w: not an absolute URL", ErrNotHTTPS)
	}
	if u.User != nil {
		return fmt.Errorf("%w: user info in the URL", ErrNotHTTPS)
	}
	host := strings.ToLower(u.Hostname())
	switch u.Scheme {
	case "https":
	case "http":
		if !p.AllowHTTPLoopback || !isLoopbackName(host) {
			return fmt.Errorf("%w: http is allowed only to loopback, when the server allows it", ErrNotHTTPS)
		}
		return nil // a local test receiver: the allow-list is for push services
	default:
		return fmt.Errorf("%w: scheme %q", ErrNotHTTPS, u.Scheme)
	}
	if ip, err := netip.ParseAddr(host); err == nil && !publicAddr(ip) {
		return fmt.Errorf("%w: %s is not a public address", ErrHostRefused, host)
	}
	if len(p.AllowHosts) == 0 {
		return nil
	}
	for _, a := range p.AllowHosts {
		a = strings.ToLower(a)
		if suffix, ok := strings.CutPrefix(a, "*."); ok {
			if strings.HasSuffix(host, "."+suffix) {
				return nil
			}
		} else if host == a {
			return nil
		}
	}
	return fmt.Errorf("%w: %s", ErrHostRefused, host)
}

func isLoopbackName(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// specialRanges are not public though IsGlobalUnicast says so: shared
// (carrier-grade NAT), IETF, benchmarking and reserved space, and NAT64,
// which may translate to a private IPv4 address.
var specialRanges = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"), netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"), netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"), netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
}

// publicAddr reports whether ip is a unicast address outside loopback,
// private, link-local and other special ranges.
func publicAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsGlobalUnicast() || ip.IsPrivate() || ip.IsLoopback() || ip.IsLinkLocalUnicast() {
		return false
	}
	for _, p := range specialRanges {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// control is the dialer's check of the address a host name resolved to:
// a public name may still point into the server's own network. It runs
// for every connection the push client makes, redirects included.
func (p *Policy) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("push: dial %s: %w", address, err)
	}
	ip := ap.Addr().Unmap()
	if publicAddr(ip) || p.AllowHTTPLoopback && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%w: %s is not a public address", ErrHostRefused, ip)
}

// dialer is the push client's dialer, with the address check.
func (p *Policy) dialer() *net.Dialer {
	return &net.Dialer{Control: p.control}
}
