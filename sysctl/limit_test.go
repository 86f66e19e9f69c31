package sysctl

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestUnitLimit(t *testing.T) {
	shipped, err := os.ReadFile("../deploy/chatd.service")
	if err != nil {
		t.Fatal(err)
	}
	etc, lib := t.TempDir(), t.TempDir()
	sf := ServiceFiles{UnitDirs: []string{etc, lib}, ShippedUnit: shipped}

	// Nothing installed: the shipped unit's value, and it says so.
	lim, err := sf.ServiceLimit("linux")
	if err != nil || lim.Value != 1048576 || !strings.Contains(lim.Source, "deploy/chatd.service") {
		t.Fatalf("shipped: %+v %v", lim, err)
	}
	// A drop-in applies even before the unit is installed (apply writes it).
	write(t, filepath.Join(etc, "chatd.service.d", "60-limits.conf"), "[Service]\nLimitNOFILE=1120256\n")
	lim, _ = sf.ServiceLimit("linux")
	if lim.Value != 1120256 || !strings.Contains(lim.Source, "60-limits.conf") || !strings.Contains(lim.Source, "overriding deploy/chatd.service") {
		t.Fatalf("drop-in: %+v", lim)
	}
	// The installed unit replaces the shipped one; a later drop-in still wins.
	write(t, filepath.Join(lib, "chatd.service"), "[Service]\n# LimitNOFILE=5\nLimitNOFILE=4096:65536\n")
	write(t, filepath.Join(etc, "chatd.service.d", "70-more.conf"), "[Service]\nLimitNOFILE=2000000\n")
	lim, _ = sf.ServiceLimit("linux")
	if lim.Value != 2000000 || !strings.Contains(lim.Source, "70-more.conf") || !strings.Contains(lim.Source, filepath.Join(lib, "chatd.service")) {
		t.Fatalf("installed + drop-ins: %+v", lim)
	}
	os.RemoveAll(filepath.Join(etc, "chatd.service.d"))
	lim, _ = sf.ServiceLimit("linux")
	if lim.Value != 65536 { // soft:hard, and Go raises soft to hard
		t.Fatalf("soft:hard: %+v", lim)
	}

	// With systemd running, the loaded unit's value is authoritative...
	sf.Systemctl = func() ([]byte, error) { return []byte("LimitNOFILE=3000000\nLoadState=loaded\n"), nil }
	lim, _ = sf.ServiceLimit("linux")
	if lim.Value != 3000000 || !strings.Contains(lim.Source, "systemctl") {
		t.Fatalf("systemctl: %+v", lim)
	}
	// ...but an unknown unit shows the manager's default: use the files.
	sf.Systemctl = func() ([]byte, error) { return []byte("LimitNOFILE=524288\nLoadState=not-found\n"), nil }
	if lim, _ = sf.ServiceLimit("linux"); lim.Value != 65536 {
		t.Fatalf("not-found unit: %+v", lim)
	}

	// infinity is worth fs.nr_open.
	write(t, filepath.Join(lib, "chatd.service"), "[Service]\nLimitNOFILE=infinity\n")
	sf.Systemctl = nil
	proc := t.TempDir()
	write(t, filepath.Join(proc, "fs", "nr_open"), "1048576\n")
	p, _ := For("linux", Target{Conns: 1000})
	got := p.Check(LinuxReader(proc, func() (Limit, error) { return sf.ServiceLimit("linux") }))
	for _, f := range got {
		if f.Knob.Key == "nofile" && (f.Current != "1048576" || !f.OK || !strings.Contains(f.Source, "infinity")) {
			t.Errorf("infinity: %+v", f)
		}
	}

	// A unit that sets no limit runs with systemd's default.
	write(t, filepath.Join(lib, "chatd.service"), "[Service]\nExecStart=/usr/local/bin/chatd serve\n")
	if lim, err := sf.ServiceLimit("linux"); err != nil || lim.Value != 524288 || !strings.Contains(lim.Source, "default") {
		t.Errorf("no LimitNOFILE: %+v %v", lim, err)
	}

	// No unit anywhere: check says the limit is unknown, not 0.
	empty := ServiceFiles{UnitDirs: []string{t.TempDir()}}
	if _, err := empty.ServiceLimit("linux"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("no unit: %v", err)
	}
}

func TestRcLimit(t *testing.T) {
	dir := t.TempDir()
	rcConf, rcD := filepath.Join(dir, "rc.conf"), filepath.Join(dir, "rc.conf.d", "chatd")
	script := filepath.Join(dir, "rc.d", "chatd")
	sf := ServiceFiles{RcConf: []string{rcConf, rcD}, RcScript: script}
	if _, err := sf.ServiceLimit("freebsd"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("nothing installed: %v", err)
	}
	write(t, script, "#!/bin/sh\n: ${chatd_nofile:=\"500000\"}\n")
	if lim, _ := sf.ServiceLimit("freebsd"); lim.Value != 500000 || lim.Source != "the chatd_nofile default in "+script {
		t.Fatalf("script default: %+v", lim)
	}
	write(t, rcConf, "sshd_enable=\"YES\"\nchatd_nofile=\"600000\"\n#chatd_nofile=1\n")
	if lim, _ := sf.ServiceLimit("freebsd"); lim.Value != 600000 || lim.Source != "chatd_nofile in "+rcConf {
		t.Fatalf("rc.conf: %+v", lim)
	}
	// rc.conf.d/chatd is read after rc.conf, as load_rc_config does.
	write(t, rcD, BlockBegin+"\nchatd_nofile=\"700000\"\n"+BlockEnd+"\n")
	if lim, _ := sf.ServiceLimit("freebsd"); lim.Value != 700000 || lim.Source != "chatd_nofile in "+rcD {
		t.Fatalf("rc.conf.d: %+v", lim)
	}
	// ...or, as a folder, each file in it in name order.
	os.Remove(rcD)
	write(t, filepath.Join(rcD, "10-limits"), "chatd_nofile=800000\n")
	write(t, filepath.Join(rcD, "20-more"), "chatd_nofile='900000'\n")
	if lim, _ := sf.ServiceLimit("freebsd"); lim.Value != 900000 || !strings.HasSuffix(lim.Source, "20-more") {
		t.Fatalf("rc.conf.d folder: %+v", lim)
	}
	os.RemoveAll(rcD)
	write(t, rcD, "chatd_nofile=lots\n")
	if _, err := sf.ServiceLimit("freebsd"); err == nil {
		t.Fatal("a non-number accepted")
	}

	// The kernel caps the limit at kern.maxfilesperproc; check shows what
	// chatd will really get, and why.
	write(t, rcD, "chatd_nofile=\"5000000\"\n")
	read, err := SysctlAReader(strings.NewReader("kern.maxfilesperproc: 1842318\n"), func() (Limit, error) { return sf.ServiceLimit("freebsd") })
	if err != nil {
		t.Fatal(err)
	}
	v, src, err := read(Knob{Key: "nofile", Kind: KindLimit})
	if err != nil || v != "1842318" || !strings.Contains(src, "5000000") || !strings.Contains(src, "capped by kern.maxfilesperproc") {
		t.Errorf("capped: %q %q %v", v, src, err)
	}
}

// TestReport: a header row, and LOW or HIGH by the side a value is on.
func TestReport(t *testing.T) {
	p, _ := For("freebsd", Target{Conns: 1_000_000, Role: "client"})
	vals := map[string]string{
		"kern.maxfiles":          "100",     // a minimum, below: LOW
		"net.inet.tcp.sendspace": "32768",   // exact, above: HIGH
		"net.inet.tcp.msl":       "1000",    // exact, below: LOW
		"kern.ipc.soacceptqueue": "1000000", // a minimum, above: ok
	}
	read := func(k Knob) (string, string, error) {
		if k.Kind == KindLimit {
			return "2000000", "chatd_nofile in /etc/rc.conf.d/chatd", nil
		}
		if v, ok := vals[k.Key]; ok {
			return v, "", nil
		}
		return k.Value, "", nil
	}
	fs := p.Check(read)
	var buf bytes.Buffer
	Report(&buf, fs)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if h := strings.Fields(lines[0]); len(h) != 5 || h[0] != "STATE" || h[1] != "SETTING" || h[2] != "CURRENT" || h[3] != "PROFILE" {
		t.Errorf("header %q", lines[0])
	}
	if len(lines) != len(fs)+1 {
		t.Errorf("%d lines for %d findings", len(lines), len(fs))
	}
	state := map[string]string{}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		state[f[1]] = f[0]
		if strings.Contains(l, "SHORT") {
			t.Errorf("SHORT in %q", l)
		}
		if f[1] == "nofile" && !strings.Contains(l, "from chatd_nofile in /etc/rc.conf.d/chatd") {
			t.Errorf("nofile row does not say where it was read: %q", l)
		}
	}
	for key, want := range map[string]string{
		"kern.maxfiles": "LOW", "net.inet.tcp.sendspace": "HIGH", "net.inet.tcp.msl": "LOW",
		"kern.ipc.soacceptqueue": "ok", "nofile": "ok", "net.inet.tcp.recvspace": "ok",
	} {
		if state[key] != want {
			t.Errorf("%s: %s, want %s", key, state[key], want)
		}
	}
	if Failed(fs) != 3 {
		t.Errorf("%d failed, want 3", Failed(fs))
	}
	// Mixed fields on an exact knob.
	if s, _ := compare(Knob{Value: "4096 16384 1048576", Exact: true}, "4096 8192 4194304"); s != StateDiffers {
		t.Errorf("mixed fields: %s", s)
	}
}
