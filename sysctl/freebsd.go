package sysctl

import (
	"fmt"
	"math/bits"
	"strconv"
)

// freebsd follows what WhatsApp described for its 2M-connection FreeBSD
// hosts: large descriptor and socket tables, a TCP control-block hash sized
// to the connection count, and small default socket buffers.
func freebsd(t Target) []Knob {
	f := strconv.Itoa(files(t.Conns))
	ks := []Knob{
		{Key: "kern.maxfiles", Value: strconv.Itoa(files(t.Conns) * 2), Kind: KindSysctl, Default: "RAM-dependent",
			Why: "open files in the whole system; twice the process budget"},
		{Key: "kern.maxfilesperproc", Value: f, Kind: KindSysctl, Default: "about 90% of kern.maxfiles",
			Why: "the chatd process's descriptor ceiling: one per connection plus 10% and 20,000 spare"},
		{Key: "nofile", Value: f, Kind: KindLimit,
			Default: fmt.Sprintf("the rc script's %d (sized for %d connections); the kernel caps any limit at kern.maxfilesperproc", files(DefaultConns), DefaultConns),
			Why:     "the chatd process's open-files limit: the rc script's chatd_nofile, which rc.subr applies with limits -n when it starts chatd"},
		{Key: "kern.ipc.maxsockets", Value: f, Kind: KindLoader, Default: "RAM-dependent",
			Why: "socket zone size, fixed at boot (loader.conf): every connection is a socket"},
		{Key: "net.inet.tcp.tcbhashsize", Value: strconv.Itoa(nextPow2(t.Conns)), Kind: KindLoader,
			Default: fmt.Sprintf("autotuned at boot to kern.ipc.maxsockets/4 rounded up to a power of two, at least 512 (%d with the maxsockets above)", autoTcbHash(files(t.Conns))),
			Why: "TCP connection hash buckets (a power of two, fixed at boot). One per connection: the lookup every arriving segment does walks about one entry at full load, " +
				"against about two with the autotuned size. A bucket is a pointer in each of the kernel's connection and port hashes: 16-24 MiB per million buckets"},
		{Key: "kern.ipc.soacceptqueue", Value: "65535", Kind: KindSysctl, Default: "128",
			Why: "accept queue per listener (kern.ipc.somaxconn on older releases) for reconnect storms"},
		{Key: "kern.ipc.nmbclusters", Value: strconv.Itoa(max(262144, t.Conns/2)), Kind: KindLoader, Default: "RAM-dependent",
			Why: "mbuf clusters for socket data: idle sockets hold none, busy ones a few; half a cluster per connection"},
		{Key: "net.inet.tcp.sendspace", Value: "16384", Kind: KindSysctl, Exact: true, Default: "32768",
			Why: "initial send buffer per socket: small chat frames, and chatd queues its own output"},
		{Key: "net.inet.tcp.recvspace", Value: "16384", Kind: KindSysctl, Exact: true, Default: "65536",
			Why: "initial receive buffer per socket; auto-sizing still grows busy sockets"},
		{Key: "net.inet.tcp.fast_finwait2_recycle", Value: "1", Kind: KindSysctl, Exact: true, Default: "0",
			Why: "recycles FIN-WAIT-2 sockets quickly after a mass disconnect"},
	}
	if t.Role == "client" {
		ks = append(ks,
			Knob{Key: "net.inet.ip.portrange.first", Value: "1024", Kind: KindSysctl, Exact: true, Default: "10000",
				Why: "first ephemeral port for a load generator"},
			Knob{Key: "net.inet.ip.portrange.last", Value: "65535", Kind: KindSysctl, Exact: true, Default: "65535",
				Why: "last ephemeral port"},
			Knob{Key: "net.inet.tcp.msl", Value: "5000", Kind: KindSysctl, Exact: true, Default: "30000",
				Why: "TIME-WAIT lasts 2 x MSL: 10 s instead of 60 s frees a load generator's ports for the next storm"},
		)
	}
	return ks
}

// autoTcbHash is the size FreeBSD picks when net.inet.tcp.tcbhashsize is
// not set (TCBHASHSIZE is 0): tcp_init() in sys/netinet/tcp_subr.c (freebsd/freebsd-src) takes
// maketcp_hashsize(maxsockets / 4), the power of two above that (1 <<
// fls(n)), and never less than its historical 512. The 14.1 fixture in
// testdata agrees: maxsockets 2,047,035 gives 524,288. The same function
// passes tcp_tcbhashsize to in_pcbinfo_init as the size of both the
// connection and the port hash, and clips a tunable that is not a power of
// two down to one, hence nextPow2 for the profile's value.
func autoTcbHash(maxsockets int) int {
	n := maxsockets / 4
	h := 1 << bits.Len(uint(n)) // fls(n) is bits.Len(n)
	return max(h, 512)
}
