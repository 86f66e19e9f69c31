// Package sysctl sizes kernel settings for a host that holds a given
// number of TCP connections: chatd servers (role "server") and the
// machines that load them (role "client"). A Profile lists every knob
// with its value, the kernel default and the reason for the value; it
// renders as the files operators install (Linux: a sysctl.d drop-in, a
// systemd LimitNOFILE snippet and limits.conf lines; FreeBSD: a marked
// block in each of sysctl.conf, loader.conf and rc.conf.d/chatd), and
// Check compares it with a running host, reading the open-files limit
// from the chatd service's own settings.
package sysctl

import (
	"fmt"
	"math/bits"
)

// Target is what the host must hold.
type Target struct {
	Conns  int    // concurrent TCP connections to hold
	Memory uint64 // bytes of RAM; sizes the TCP buffer budget
	Role   string // "server" (default) or "client" (a load generator)
}

// Where a knob is set.
const (
	KindSysctl = "sysctl"       // sysctl.d / sysctl.conf, settable at run time
	KindLoader = "loader"       // FreeBSD loader.conf: boot-time tunable
	KindLimit  = "rlimit"       // process limit: LimitNOFILE / limits.conf
	KindModule = "module-param" // Linux module parameter (/sys/module/...)
)

// Knob is one setting.
type Knob struct {
	Key      string
	Value    string // one number, or several separated by spaces (all compared)
	Kind     string
	Default  string // the kernel's usual default, for the comment
	Why      string // what it limits and why this value
	Optional bool   // absent on some kernels (a conntrack-less host): "-" in sysctl.d
	Exact    bool   // must equal Value; otherwise Value is a minimum
}

// Profile is a set of knobs for one OS and target.
type Profile struct {
	OS     string // "linux" or "freebsd"
	Target Target
	Knobs  []Knob
}

// For returns the profile for os ("linux" or "freebsd").
func For(os string, t Target) (Profile, error) {
	if t.Conns <= 0 {
		return Profile{}, fmt.Errorf("sysctl: connections must be positive, got %d", t.Conns)
	}
	if t.Memory == 0 {
		t.Memory = 64 << 30
	}
	if t.Role == "" {
		t.Role = "server"
	}
	if t.Role != "server" && t.Role != "client" {
		return Profile{}, fmt.Errorf("sysctl: role must be server or client, got %q", t.Role)
	}
	switch os {
	case "linux":
		return Profile{OS: os, Target: t, Knobs: linux(t)}, nil
	case "freebsd":
		return Profile{OS: os, Target: t, Knobs: freebsd(t)}, nil
	}
	return Profile{}, fmt.Errorf("sysctl: unknown OS %q (linux or freebsd)", os)
}

// DefaultConns is the connection count `chatd sysctl` sizes for unless
// told otherwise; the shipped unit and rc script follow it.
const DefaultConns = 1_000_000

// Sizing rules shared by both systems.

// files is the descriptor budget: one per connection, 10% headroom for
// bursts of connections closing while new ones arrive, and 20,000 for the
// database, logs and listeners.
func files(conns int) int { return roundUp(conns+conns/10+20000, 1024) }

// tcpPages sizes the kernel's TCP buffer budget in 4 KiB pages. An idle
// chat socket holds no buffer pages (measured: BENCHMARKS.md), so the
// budget is for the connections that are busy at once: 16 KiB for every
// connection, but never more than a quarter of RAM. Pressure starts at
// 3/4 of it and the minimum is half.
func tcpPages(t Target) (min, pressure, max uint64) {
	max = uint64(t.Conns) * 16 << 10
	if q := t.Memory / 4; max > q {
		max = q
	}
	max /= 4096
	return max / 2, max * 3 / 4, max
}

func nextPow2(n int) int {
	if n <= 1 {
		return 1
	}
	return 1 << bits.Len(uint(n-1))
}

func roundUp(n, to int) int { return (n + to - 1) / to * to }
