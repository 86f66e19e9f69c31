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

func (a *peerAddr) tcpAddr() *net.TCPAddr {
	if a.v4 {
		return &net.TCPAddr{IP: net.IPv4(a.ip[0], a.ip[1], a.ip[2], a.ip[3]).To4(), Port: int(a.port)}
	}
	return &net.TCPAddr{IP: append(net.IP(nil), a.ip[:]...), Port: int(a.port)}
}

// Network implements net.Addr.
func (a *peerAddr) Network() string { return "tcp" }

// String implements net.Addr, as net.TCPAddr formats it.
func (a *peerAddr) String() string { return a.tcpAddr().String() }
