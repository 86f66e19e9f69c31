package sysctl

import "strconv"

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
		{Key: "nofile", Value: f, Kind: KindLimit, Default: "kern.maxfilesperproc",
			Why: "the process limit (login.conf openfiles or the rc script's limits -n)"},
		{Key: "kern.ipc.maxsockets", Value: f, Kind: KindLoader, Default: "RAM-dependent",
			Why: "socket zone size, fixed at boot (loader.conf): every connection is a socket"},
		{Key: "net.inet.tcp.tcbhashsize", Value: strconv.Itoa(nextPow2(t.Conns)), Kind: KindLoader, Default: "524288",
			Why: "TCP control-block hash buckets, a power of two about the connection count so lookups stay O(1); boot-time"},
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
