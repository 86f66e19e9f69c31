package sysctl

import "strconv"

func linux(t Target) []Knob {
	f := strconv.Itoa(files(t.Conns))
	min, pressure, max := tcpPages(t)
	ks := []Knob{
		{Key: "fs.nr_open", Value: f, Kind: KindSysctl, Default: "1048576",
			Why: "ceiling for any process's open-files limit; LimitNOFILE above it fails. One descriptor per connection plus 10% and 20,000 spare"},
		{Key: "fs.file-max", Value: strconv.Itoa(files(t.Conns) * 2), Kind: KindSysctl, Default: "about RAM/10KiB",
			Why: "open files in the whole system; twice the process budget leaves room for everything else on the host"},
		{Key: "nofile", Value: f, Kind: KindLimit, Default: "1024 soft / 4096 hard (524288 under systemd)",
			Why: "the chatd process's own descriptor limit (systemd LimitNOFILE, limits.conf nofile); Go raises the soft limit to it"},
		{Key: "net.core.somaxconn", Value: "65535", Kind: KindSysctl, Default: "4096",
			Why: "accept queue per listener: a reconnect storm after a restart arrives faster than one accept loop drains it"},
		{Key: "net.ipv4.tcp_max_syn_backlog", Value: "65535", Kind: KindSysctl, Default: "2048",
			Why: "half-open connections queued during a storm before SYN cookies take over"},
		{Key: "net.core.netdev_max_backlog", Value: "16384", Kind: KindSysctl, Default: "1000",
			Why: "packets queued per CPU between the NIC and TCP during bursts"},
		{Key: "net.ipv4.tcp_mem", Value: u(min) + " " + u(pressure) + " " + u(max), Kind: KindSysctl, Default: "about 9% / 12% / 18% of RAM, in pages",
			Why: "TCP buffer pages for all sockets (min, pressure, max): idle chat sockets hold none, so budget 16 KiB per connection for busy ones, capped at a quarter of RAM"},
		{Key: "net.ipv4.tcp_rmem", Value: "4096 16384 1048576", Kind: KindSysctl, Exact: true, Default: "4096 131072 6291456",
			Why: "per-socket receive buffer (min, initial, max): chat frames are small, so a 16 KiB start keeps a million buffers affordable; autotuning still grows busy ones to 1 MiB"},
		{Key: "net.ipv4.tcp_wmem", Value: "4096 16384 1048576", Kind: KindSysctl, Exact: true, Default: "4096 16384 4194304",
			Why: "per-socket send buffer (min, initial, max); chatd queues its own output, so the kernel needs no large buffer per client"},
		{Key: "net.ipv4.tcp_max_orphans", Value: strconv.Itoa(t.Conns), Kind: KindSysctl, Default: "RAM-dependent, often 65536-262144",
			Why: "sockets closed by chatd but not yet acknowledged by the peer; a mass close (restart, slow consumers) can orphan every connection at once"},
		{Key: "net.ipv4.tcp_fin_timeout", Value: "15", Kind: KindSysctl, Exact: true, Default: "60",
			Why: "seconds in FIN-WAIT-2 for connections the peer never finishes closing: frees memory sooner after a mass disconnect"},
		{Key: "net.netfilter.nf_conntrack_max", Value: strconv.Itoa(t.Conns + t.Conns/4), Kind: KindSysctl, Optional: true, Default: "262144",
			Why: "tracked connections when a firewall uses conntrack: every client needs an entry or new connections are dropped (absent without nf_conntrack)"},
		{Key: "nf_conntrack.hashsize", Value: strconv.Itoa(nextPow2(t.Conns / 4)), Kind: KindModule, Optional: true, Default: "65536",
			Why: "conntrack hash buckets (/sys/module/nf_conntrack/parameters/hashsize): about 4 entries per bucket keeps lookups short"},
	}
	if t.Role == "client" {
		ks = append(ks,
			Knob{Key: "net.ipv4.ip_local_port_range", Value: "1024 65535", Kind: KindSysctl, Exact: true, Default: "32768 60999",
				Why: "ephemeral ports per source address for a load generator: 64,511 instead of 28,232 connections per (source, destination) pair"},
			Knob{Key: "net.ipv4.tcp_tw_reuse", Value: "1", Kind: KindSysctl, Exact: true, Default: "2 (loopback only)",
				Why: "lets a load generator reuse ports in TIME-WAIT for new outgoing connections during reconnect storms"},
		)
	}
	return ks
}

func u(v uint64) string { return strconv.FormatUint(v, 10) }
