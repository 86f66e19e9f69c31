package sysctl

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMergeBlock(t *testing.T) {
	const mine = "# operator's own\nkern.ipc.shm_use_phys=1\n"
	once, err := MergeBlock(mine, "a=1\nb=2\n")
	if err != nil {
		t.Fatal(err)
	}
	want := mine + "\n" + BlockBegin + "\na=1\nb=2\n" + BlockEnd + "\n"
	if once != want {
		t.Fatalf("first merge:\n%s\nwant:\n%s", once, want)
	}
	twice, _ := MergeBlock(once, "a=1\nb=2\n")
	if twice != once {
		t.Fatalf("second merge changed the file:\n%s", twice)
	}
	// A new profile replaces the block where it stands; lines after it stay.
	after := once + "net.inet.tcp.msl=7500\n"
	changed, _ := MergeBlock(after, "a=3")
	if want := mine + "\n" + BlockBegin + "\na=3\n" + BlockEnd + "\nnet.inet.tcp.msl=7500\n"; changed != want {
		t.Fatalf("replace:\n%s\nwant:\n%s", changed, want)
	}
	// No trailing newline, empty file.
	if got, _ := MergeBlock("x=1", "a=1"); got != "x=1\n\n"+BlockBegin+"\na=1\n"+BlockEnd+"\n" {
		t.Errorf("no trailing newline: %q", got)
	}
	if got, _ := MergeBlock("", "a=1"); got != BlockBegin+"\na=1\n"+BlockEnd+"\n" {
		t.Errorf("empty file: %q", got)
	}
	// Broken markers are the operator's to fix: never guess what to cut.
	for _, bad := range []string{
		mine + BlockBegin + "\na=1\n",
		mine + BlockEnd + "\n",
		BlockBegin + "\n" + BlockBegin + "\n" + BlockEnd + "\n",
		BlockBegin + "\n" + BlockEnd + "\n" + BlockEnd + "\n",
	} {
		if got, err := MergeBlock(bad, "a=1"); err == nil {
			t.Errorf("merged into broken markers:\n%s\ngave:\n%s", bad, got)
		}
	}
}

func TestWriteBlock(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "etc", "sysctl.conf")
	if err := WriteBlock(path, "a=1"); err != nil { // creates the file and folder
		t.Fatal(err)
	}
	os.Chmod(path, 0o600)
	b, _ := os.ReadFile(path)
	os.WriteFile(path, append([]byte("mine=1\n"), b...), 0o600)
	for range 2 {
		if err := WriteBlock(path, "a=2"); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := os.ReadFile(path)
	if want := "mine=1\n" + BlockBegin + "\na=2\n" + BlockEnd + "\n"; string(got) != want {
		t.Fatalf("file:\n%s\nwant:\n%s", got, want)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, the file had 0600", st.Mode().Perm())
	}
	left, _ := os.ReadDir(filepath.Dir(path))
	if len(left) != 1 {
		t.Errorf("temporary files left: %v", left)
	}
	os.WriteFile(path, []byte(BlockBegin+"\nmine=1\n"), 0o644)
	if err := WriteBlock(path, "a=2"); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("unterminated block: err %v", err)
	}
	if got, _ := os.ReadFile(path); string(got) != BlockBegin+"\nmine=1\n" {
		t.Error("a failed merge changed the file")
	}
}

// TestFreeBSDApply installs the FreeBSD profile twice into a scratch root
// holding an operator's sysctl.conf: one chatd block per file, the
// operator's lines kept, and the files FreeBSD reads at boot (not the
// sysctl.conf.d it never reads).
func TestFreeBSDApply(t *testing.T) {
	p, _ := For("freebsd", Target{Conns: 1_000_000})
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	const mine = "# mine\nsecurity.bsd.see_other_uids=0\n"
	os.WriteFile(filepath.Join(root, "etc/sysctl.conf"), []byte(mine), 0o644)
	// Every value already set and the service limit high: only files change.
	read := func(k Knob) (string, string, error) { return k.Value, "test", nil }
	for range 2 {
		for _, a := range p.Apply(ApplyOptions{Root: root, Read: read}) {
			if a.Err != nil {
				t.Fatalf("%s: %v", a.What, a.Err)
			}
			if strings.Contains(a.What, "systemd") || strings.Contains(a.What, "systemctl") {
				t.Errorf("systemd wording in FreeBSD apply: %s", a.What)
			}
		}
	}
	for _, f := range []string{"etc/sysctl.conf", "boot/loader.conf", "etc/rc.conf.d/chatd"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		if strings.Count(s, BlockBegin) != 1 || strings.Count(s, BlockEnd) != 1 {
			t.Errorf("%s after two applies:\n%s", f, s)
		}
	}
	sys, _ := os.ReadFile(filepath.Join(root, "etc/sysctl.conf"))
	if !strings.HasPrefix(string(sys), mine) || !strings.Contains(string(sys), "\nkern.maxfiles=2240512\n") {
		t.Errorf("sysctl.conf:\n%s", sys)
	}
	loader, _ := os.ReadFile(filepath.Join(root, "boot/loader.conf"))
	if !strings.Contains(string(loader), "\nnet.inet.tcp.tcbhashsize=\"1048576\"\n") {
		t.Errorf("loader.conf:\n%s", loader)
	}
	rc, _ := os.ReadFile(filepath.Join(root, "etc/rc.conf.d/chatd"))
	if !strings.Contains(string(rc), "\nchatd_nofile=\"1120256\"\n") {
		t.Errorf("rc.conf.d/chatd:\n%s", rc)
	}
	// What apply wrote is what check then reads as the service's limit.
	sf := ServiceFiles{RcConf: []string{filepath.Join(root, "etc/rc.conf"), filepath.Join(root, "etc/rc.conf.d/chatd")}}
	lim, err := sf.ServiceLimit("freebsd")
	if err != nil || lim.Value != 1120256 || !strings.Contains(lim.Source, "rc.conf.d/chatd") {
		t.Errorf("limit after apply: %+v, %v", lim, err)
	}
	for _, gone := range []string{"etc/sysctl.conf.d", "boot/loader.conf.d", "etc/login.conf"} {
		if _, err := os.Stat(filepath.Join(root, gone)); !os.IsNotExist(err) {
			t.Errorf("apply wrote %s", gone)
		}
	}
}
