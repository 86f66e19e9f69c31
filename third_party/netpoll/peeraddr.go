// An accepted connection's remote address, kept compact (PATCHES.md 9):
// not upstream's.

//go:build !windows

package netpoll

import (
	"net"
	"syscall"
)

// peerAddr is the remote address of an accepted TCP connection: 24 bytes
// held for the connection's life instead of a *net.TCPAddr (48 bytes) and
// the syscall.SockaddrInet4/6 its IP slice points into (32 or 48 bytes).
// RemoteAddr still returns a *net.TCPAddr, made on each call.
type peerAddr struct {
	ip   [16]byte // the first 4 bytes for IPv4
	port uint16
	v4   bool
}

// acceptedAddr is sockaddrToAddr for Accept: IPv4, and IPv6 without a
// zone, are kept as a peerAddr; anything else as sockaddrToAddr makes it.
func acceptedAddr(sa syscall.Sockaddr) net.Addr {
	switch sa := sa.(type) {
	case *syscall.SockaddrInet4:
		a := &peerAddr{port: uint16(sa.Port), v4: true}
		copy(a.ip[:], sa.Addr[:])
		return a
	case *syscall.SockaddrInet6:
		if sa.ZoneId == 0 {
			return &peerAddr{ip: sa.Addr, port: uint16(sa.Port)}
		}
	}
	return sockaddrToAddr(sa)
}

// tcpAddr is what sockaddrToAddr made: a 4-byte IP for IPv4, 16 for IPv6,
// in a copy the caller may keep or change.
func (a *peerAddr) tcpAddr() *net.TCPAddr {
	n := len(a.ip)
	if a.v4 {
		n = net.IPv4len
	}
	return &net.TCPAddr{IP: append(net.IP(nil), a.ip[:n]...), Port: int(a.port)}
}

// Network implements net.Addr.
func (a *peerAddr) Network() string { return "tcp" }

// String implements net.Addr, as net.TCPAddr formats it.
func (a *peerAddr) String() string { return a.tcpAddr().String() }
