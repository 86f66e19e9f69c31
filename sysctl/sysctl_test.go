package sysctl

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func knob(t *testing.T, p Profile, key string) Knob {
	t.Helper()
	for _, k := range p.Knobs {
		if k.Key == key {
			return k
		}
	}
	t.Fatalf("%s profile has no %s", p.OS, key)
	return Knob{}
}

func num(t *testing.T, s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestSizing(t *testing.T) {
	p, err := For("linux", Target{Conns: 1_000_000, Memory: 64 << 30})
	if err != nil {
		t.Fatal(err)
	}
	// A million connections need more than the default 1,048,576 file ceiling.
	nr := num(t, knob(t, p, "fs.nr_open").Value)
	if nr < 1_100_000 || nr%1024 != 0 {
		t.Errorf("fs.nr_open = %d for 1M connections", nr)
	}
	if lim := num(t, knob(t, p, "nofile").Value); lim != nr {
		t.Errorf("LimitNOFILE %d must equal fs.nr_open %d (it cannot exceed it)", lim, nr)
	}
	if fm := num(t, knob(t, p, "fs.file-max").Value); fm < 2*nr {
		t.Errorf("fs.file-max %d below twice the process budget", fm)
	}
	// TCP memory: 16 KiB per connection = 16 GB, under a quarter of 64 GiB.
	mem := strings.Fields(knob(t, p, "net.ipv4.tcp_mem").Value)
	if max := num(t, mem[2]); max != 1_000_000*16*1024/4096 {
		t.Errorf("tcp_mem max = %d pages", max)
	}
	// With 8 GiB the quarter-of-RAM cap wins.
	small, _ := For("linux", Target{Conns: 1_000_000, Memory: 8 << 30})
	if max := num(t, strings.Fields(knob(t, small, "net.ipv4.tcp_mem").Value)[2]); max != (8<<30)/4/4096 {
		t.Errorf("tcp_mem max with 8 GiB = %d pages, want a quarter of RAM", max)
	}
	// The client role adds the ephemeral port range.
	cl, _ := For("linux", Target{Conns: 100_000, Role: "client"})
	knob(t, cl, "net.ipv4.ip_local_port_range")

	fb, _ := For("freebsd", Target{Conns: 2_280_000})
	if h := num(t, knob(t, fb, "net.inet.tcp.tcbhashsize").Value); h != 1<<22 {
		t.Errorf("tcbhashsize %d, want the power of two at or above 2.28M", h)
	}
	if _, err := For("plan9", Target{Conns: 1}); err == nil {
		t.Error("unknown OS accepted")
	}
	if _, err := For("linux", Target{}); err == nil {
		t.Error("zero connections accepted")
	}
}

// TestCheckThisHost reads this Linux machine, tuned or not: every value
// check reports is the one in /proc/sys, and its verdict follows from that
// value alone. Only the open-files limit is injected, so that one verdict
// is known either way.
func TestCheckThisHost(t *testing.T) {
	if _, err := os.Stat("/proc/sys/fs/nr_open"); err != nil {
		t.Skip("not Linux")
	}
	p, _ := For("linux", Target{Conns: 1_000_000})
	fs := p.Check(LinuxReader("/proc/sys", Fixed(Limit{Value: 20000, Source: "test"})))
	for _, f := range fs {
		k := f.Knob
		switch k.Kind {
		case KindLimit:
			if f.Current != "20000" || f.OK {
				t.Errorf("nofile: current %q ok=%v for a limit of 20,000 and 1M connections", f.Current, f.OK)
			}
			continue
		case KindModule:
			continue // under /sys/module, read by the same code path
		}
		raw, err := os.ReadFile("/proc/sys/" + strings.ReplaceAll(k.Key, ".", "/"))
		if err != nil {
			if f.Current != "" || f.OK != k.Optional {
				t.Errorf("%s absent here, but check says %q ok=%v", k.Key, f.Current, f.OK)
			}
			continue
		}
		if want := strings.Join(strings.Fields(string(raw)), " "); f.Current != want {
			t.Errorf("%s reported %q, /proc says %q", k.Key, f.Current, want)
		}
		if state, _ := compare(k, f.Current); f.OK != (state == StateOK) {
			t.Errorf("%s = %q: ok=%v, compare says %v", k.Key, f.Current, f.OK, state)
		}
	}
	// A target any host holds, with a limit that is enough: nofile passes.
	small, _ := For("linux", Target{Conns: 1000})
	for _, f := range small.Check(LinuxReader("/proc/sys", Fixed(Limit{Value: 1_000_000}))) {
		if f.Knob.Key == "nofile" && !f.OK {
			t.Errorf("nofile: %s", f.Detail)
		}
	}
}

// fakeProcSys writes a /proc/sys tree holding value(k) for every sysctl
// knob of p.
func fakeProcSys(t *testing.T, p Profile, value func(Knob) string) string {
	t.Helper()
	root := t.TempDir()
	for _, k := range p.Knobs {
		if k.Kind != KindSysctl {
			continue
		}
		path := filepath.Join(root, strings.ReplaceAll(k.Key, ".", "/"))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(value(k)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// TestCheckTunedAndShortHosts: a host tuned above the profile (every
// minimum exceeded, every exact knob equal) passes and apply changes
// nothing on it; a host below it fails on every minimum.
func TestCheckTunedAndShortHosts(t *testing.T) {
	p, _ := For("linux", Target{Conns: 100_000})
	scale := func(k Knob, f func(uint64) uint64) string {
		fields := strings.Fields(k.Value)
		for i, v := range fields {
			n, _ := strconv.ParseUint(v, 10, 64)
			fields[i] = strconv.FormatUint(f(n), 10)
		}
		return strings.Join(fields, "\t") // /proc separates tcp_mem's fields with tabs
	}
	tuned := fakeProcSys(t, p, func(k Knob) string {
		if k.Exact {
			return k.Value
		}
		return scale(k, func(n uint64) uint64 { return 2*n + 1 })
	})
	for _, f := range p.Check(LinuxReader(tuned, Fixed(Limit{Value: 10_000_000}))) {
		if !f.OK && f.Knob.Kind != KindModule {
			t.Errorf("tuned host: %s = %q: %s", f.Knob.Key, f.Current, f.Detail)
		}
	}
	for _, a := range p.Apply(ApplyOptions{Root: t.TempDir(), ProcSys: tuned, Nofile: Fixed(Limit{Value: 10_000_000})}) {
		if strings.HasPrefix(a.What, "set ") {
			t.Errorf("apply changed a tuned host: %s", a.What)
		}
	}

	short := fakeProcSys(t, p, func(k Knob) string { return scale(k, func(n uint64) uint64 { return n / 2 }) })
	for _, f := range p.Check(LinuxReader(short, Fixed(Limit{Value: 1024}))) {
		if f.Knob.Kind == KindSysctl && f.OK {
			t.Errorf("short host: %s = %q passed", f.Knob.Key, f.Current)
		}
	}
}

func TestCheckFreeBSDFixture(t *testing.T) {
	f, err := os.Open("testdata/freebsd-14.1-sysctl-a.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	read, err := SysctlAReader(f, Fixed(Limit{Value: 1_120_256, Source: "test"}))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := For("freebsd", Target{Conns: 2_280_000})
	got := map[string]Finding{}
	for _, fd := range p.Check(read) {
		got[fd.Knob.Key] = fd
	}
	for key, ok := range map[string]bool{
		"kern.maxfiles":              false, // 2,047,032 < 2 x 2.53M
		"kern.ipc.maxsockets":        false,
		"net.inet.tcp.tcbhashsize":   false,
		"kern.ipc.soacceptqueue":     false,
		"kern.ipc.nmbclusters":       false, // 1,022,976 < half a cluster per connection
		"net.inet.tcp.sendspace":     false,
		"net.inet.ip.portrange.last": true, // server role: not in the profile at all
	} {
		if key == "net.inet.ip.portrange.last" {
			if _, in := got[key]; in {
				t.Errorf("server profile sets %s, a load generator's knob", key)
			}
			continue
		}
		if got[key].OK != ok {
			t.Errorf("%s: ok=%v (%s), want %v", key, got[key].OK, got[key].Detail, ok)
		}
	}
	if got["kern.ipc.soacceptqueue"].Current != "128" {
		t.Errorf("soacceptqueue read as %q", got["kern.ipc.soacceptqueue"].Current)
	}
}

func TestFilesAndApplyDryRun(t *testing.T) {
	p, _ := For("linux", Target{Conns: 500_000})
	files := p.Files()
	var sysd string
	for _, f := range files {
		if strings.HasSuffix(f.Path, "sysctl.d/60-chatd.conf") {
			sysd = f.Content
		}
	}
	if !strings.Contains(sysd, "fs.nr_open = 570368") || !strings.Contains(sysd, "-net.netfilter.nf_conntrack_max") {
		t.Fatalf("sysctl.d file:\n%s", sysd)
	}
	if strings.Contains(sysd, "tcp_tw_recycle") {
		t.Fatal("tcp_tw_recycle was removed in Linux 4.12 and must never appear")
	}
	// Apply into a scratch root with a fake /proc/sys.
	root := t.TempDir()
	proc := filepath.Join(root, "proc")
	os.MkdirAll(filepath.Join(proc, "fs"), 0o755)
	os.WriteFile(filepath.Join(proc, "fs", "nr_open"), []byte("1048576\n"), 0o644)
	acts := p.Apply(ApplyOptions{DryRun: true, Root: root, ProcSys: proc, Nofile: Fixed(Limit{Value: 1024})})
	if len(acts) == 0 || !strings.HasPrefix(acts[0].What, "would write") {
		t.Fatalf("dry run: %+v", acts)
	}
	if _, err := os.Stat(filepath.Join(root, "etc")); !os.IsNotExist(err) {
		t.Fatal("dry run wrote files")
	}
	acts = p.Apply(ApplyOptions{Root: root, ProcSys: proc, Nofile: Fixed(Limit{Value: 1024})})
	if b, _ := os.ReadFile(filepath.Join(root, "etc/sysctl.d/60-chatd.conf")); string(b) != sysd {
		t.Fatal("apply did not install the sysctl.d file")
	}
	_ = acts
	// nr_open was already above 570,368: apply must not lower it.
	if b, _ := os.ReadFile(filepath.Join(proc, "fs", "nr_open")); strings.TrimSpace(string(b)) != "1048576" {
		t.Fatalf("apply lowered fs.nr_open to %s", b)
	}
}

// TestTcbHashAutotune: the default the profile states is FreeBSD's own
// rule (tcp_init: maxsockets/4 up to a power of two, at least 512), which
// the 14.1 fixture shows: maxsockets 2,047,035 booted with 524,288.
func TestTcbHashAutotune(t *testing.T) {
	for maxsockets, want := range map[int]int{2047035: 524288, 1000: 512, 4 << 20: 2 << 20, 1120256: 524288} {
		if got := autoTcbHash(maxsockets); got != want {
			t.Errorf("autoTcbHash(%d) = %d, want %d", maxsockets, got, want)
		}
	}
	f, _ := os.Open("testdata/freebsd-14.1-sysctl-a.txt")
	defer f.Close()
	read, _ := SysctlAReader(f, Fixed(Limit{}))
	ms, _, _ := read(Knob{Key: "kern.ipc.maxsockets"})
	hs, _, _ := read(Knob{Key: "net.inet.tcp.tcbhashsize"})
	if strconv.Itoa(autoTcbHash(num(t, ms))) != hs {
		t.Errorf("fixture: maxsockets %s booted with tcbhashsize %s, the rule gives %d", ms, hs, autoTcbHash(num(t, ms)))
	}
	p, _ := For("freebsd", Target{Conns: 1_000_000})
	if d := knob(t, p, "net.inet.tcp.tcbhashsize").Default; !strings.Contains(d, "524288") {
		t.Errorf("stated default %q, FreeBSD would autotune to 524288 with this maxsockets", d)
	}
}

// TestFreeBSDPrint: what an operator reads for FreeBSD names the files
// FreeBSD reads, in sysctl.conf(5)'s name=value form, and nothing of systemd.
func TestFreeBSDPrint(t *testing.T) {
	for _, role := range []string{"server", "client"} {
		p, _ := For("freebsd", Target{Conns: 1_000_000, Role: role})
		var b strings.Builder
		p.Print(&b)
		out := b.String()
		for _, bad := range []string{"systemd", "LimitNOFILE", "sysctl.conf.d", "loader.conf.d", "login.conf", "sysctl.d"} {
			if strings.Contains(out, bad) {
				t.Errorf("%s: FreeBSD output mentions %s", role, bad)
			}
		}
		for _, f := range p.Files() {
			if !f.Block {
				t.Errorf("%s is written whole; FreeBSD files take a marked block", f.Path)
			}
			if f.Path != "/etc/sysctl.conf" {
				continue
			}
			for _, l := range strings.Split(f.Content, "\n") {
				if l != "" && !strings.HasPrefix(l, "#") && strings.Contains(l, " ") {
					t.Errorf("sysctl.conf line %q: sysctl.conf(5) wants name=value, no spaces", l)
				}
			}
		}
		if !strings.Contains(out, "==> /etc/sysctl.conf (chatd block") || !strings.Contains(out, BlockBegin) {
			t.Errorf("print does not show the block:\n%s", out)
		}
	}
}
