// Tests for peerAddr (PATCHES.md 9): not upstream's.

//go:build !windows

package netpoll

import (
	"net"
	"syscall"
	"testing"
)

// An accepted connection's RemoteAddr is the *net.TCPAddr upstream gave,
// formatted the same, for IPv4, IPv6 and IPv4-mapped IPv6 peers.
func TestAcceptedAddrMatchesTCPAddr(t *testing.T) {
	for _, sa := range []syscall.Sockaddr{
		&syscall.SockaddrInet4{Port: 40123, Addr: [4]byte{127, 0, 0, 1}},
		&syscall.SockaddrInet6{Port: 443, Addr: [16]byte{0x20, 0x01, 0x0d, 0xb8, 15: 1}},
		&syscall.SockaddrInet6{Port: 5222, Addr: [16]byte{10: 0xff, 11: 0xff, 192, 0, 2, 7}},
	} {
		want := sockaddrToAddr(sa).(*net.TCPAddr)
		fd := &netFD{remoteAddr: acceptedAddr(sa)}
		got, ok := fd.RemoteAddr().(*net.TCPAddr)
		if !ok {
			t.Fatalf("%v: RemoteAddr is %T, want *net.TCPAddr", sa, fd.RemoteAddr())
		}
		if !got.IP.Equal(want.IP) || got.Port != want.Port || got.String() != want.String() {
			t.Errorf("RemoteAddr %v, want %v", got, want)
		}
		if s := fd.remoteAddr.String(); s != want.String() {
			t.Errorf("String %q, want %q", s, want.String())
		}
	}
}
