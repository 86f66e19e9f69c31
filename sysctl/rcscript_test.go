package sysctl

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const rcScript = "../deploy/chatd.rc"

// TestRcScriptSyntax: the FreeBSD rc script parses under a POSIX shell
// (dash here; FreeBSD's sh is also an ash), and has no bashisms when
// checkbashisms is installed.
func TestRcScriptSyntax(t *testing.T) {
	for _, sh := range []string{"/bin/sh", "dash"} {
		path, err := exec.LookPath(sh)
		if err != nil {
			t.Logf("%s not found", sh)
			continue
		}
		if out, err := exec.Command(path, "-n", rcScript).CombinedOutput(); err != nil {
			t.Errorf("%s -n %s: %v\n%s", sh, rcScript, err, out)
		}
	}
	if cb, err := exec.LookPath("checkbashisms"); err == nil {
		if out, err := exec.Command(cb, rcScript).CombinedOutput(); err != nil {
			t.Errorf("checkbashisms: %v\n%s", err, out)
		}
	} else {
		t.Log("checkbashisms not installed: only the syntax was checked")
	}
}

// runRc runs the rc script under /bin/sh with testdata/rc/rc.subr in place
// of /etc/rc.subr, and tools that only record their arguments in place of
// install and chmod. edit, if set, rewrites the script first. It returns
// the variables the script handed run_rc_command and the recorded calls.
func runRc(t *testing.T, rcConf string, edit func(string) string, args ...string) (map[string]string, string) {
	t.Helper()
	b, err := os.ReadFile(rcScript)
	if err != nil {
		t.Fatal(err)
	}
	script := string(b)
	stub, err := filepath.Abs("testdata/rc/rc.subr")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(script, ". /etc/rc.subr\n"); n != 1 {
		t.Fatalf("the rc script sources /etc/rc.subr %d times, want once", n)
	}
	script = strings.Replace(script, ". /etc/rc.subr\n", ". "+stub+"\n", 1)
	if edit != nil {
		script = edit(script)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "chatd")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "bin")
	calls := filepath.Join(dir, "calls")
	os.Mkdir(bin, 0o755)
	for _, tool := range []string{"install", "chmod"} {
		rec := "#!/bin/sh\necho \"" + tool + " $*\" >> " + calls + "\n"
		if err := os.WriteFile(filepath.Join(bin, tool), []byte(rec), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("/bin/sh", append([]string{path}, args...)...)
	cmd.Env = []string{"PATH=" + bin + ":/usr/bin:/bin", "TEST_RC_CONF=" + rcConf}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sh chatd %v: %v\n%s", args, err, out)
	}
	vars := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			vars[k] = v
		}
	}
	rec, _ := os.ReadFile(calls)
	return vars, string(rec)
}

func TestRcScriptDefaults(t *testing.T) {
	v, calls := runRc(t, "", nil, "start")
	want := map[string]string{
		"name":     "chatd",
		"rcvar":    "chatd_enable",
		"command":  "/usr/sbin/daemon",
		"procname": "/usr/sbin/daemon",
		"pidfile":  "/var/run/chatd.pid",
		"sig_stop": "TERM",
		// The paths README and deploy/chatd.conf give for FreeBSD.
		"chatd_config": "/usr/local/etc/chatd.conf",
		"chatd_dir":    "/var/db/chatd",
		"chatd_bin":    "/usr/local/bin/chatd",
		"chatd_user":   "chatd",
		"chatd_enable": "NO",
		// rc.subr's status and stop look for the pid file's process by
		// procname; daemon -P writes the supervisor's pid, a daemon(8).
		"pidfile_process_found": "yes",
		"precmd":                "ok",
	}
	for k, w := range want {
		if v[k] != w {
			t.Errorf("%s = %q, want %q", k, v[k], w)
		}
	}
	// The open-files default is the profile's for the default target, so
	// an untouched host runs chatd with what `chatd sysctl` sized.
	p, _ := For("freebsd", Target{Conns: DefaultConns})
	nofile := knob(t, p, "nofile").Value
	if v["chatd_nofile"] != nofile {
		t.Errorf("chatd_nofile default %q, the profile's is %s", v["chatd_nofile"], nofile)
	}
	if strings.Fields(v["chatd_limits"])[0] != "-n" || strings.Fields(v["chatd_limits"])[1] != nofile {
		t.Errorf("chatd_limits = %q, want -n %s", v["chatd_limits"], nofile)
	}
	args := " " + v["command_args"] + " "
	for _, part := range []string{
		" -P /var/run/chatd.pid ", // the supervisor's pid, matching procname
		" -r ",                    // restart chatd if it dies
		" -u chatd ",
		" /usr/local/bin/chatd serve --config /usr/local/etc/chatd.conf --data /var/db/chatd ",
	} {
		if !strings.Contains(args, part) {
			t.Errorf("command_args %q lacks %q", v["command_args"], part)
		}
	}
	if strings.Contains(args, " -p ") {
		t.Errorf("command_args %q write the child's pid (-p): rc.subr would not find a daemon(8) under it", v["command_args"])
	}
	if !strings.Contains(calls, "install -d -o chatd -m 0700 /var/db/chatd") {
		t.Errorf("prestart did not create the private data folder; calls:\n%s", calls)
	}
}

// TestRcScriptSettings: rc.conf values override every default, and a
// chatd_limits of the operator's own is kept after the nofile limit.
func TestRcScriptSettings(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "rc.conf")
	os.WriteFile(conf, []byte(`chatd_enable="YES"
chatd_nofile="2300000"
chatd_dir="/data/chatd"
chatd_user="im"
chatd_config="/data/chatd.conf"
chatd_limits="-c 0"
`), 0o644)
	v, calls := runRc(t, conf, nil, "start")
	if v["chatd_limits"] != "-n 2300000 -c 0" {
		t.Errorf("chatd_limits = %q", v["chatd_limits"])
	}
	if !strings.Contains(v["command_args"], "-u im /usr/local/bin/chatd serve --config /data/chatd.conf --data /data/chatd") {
		t.Errorf("command_args = %q", v["command_args"])
	}
	if !strings.Contains(calls, "install -d -o im -m 0700 /data/chatd") {
		t.Errorf("calls:\n%s", calls)
	}
}

// TestRcScriptOldProcname: the stub's process match is the one that
// failed before the fix: with procname the chatd binary, the daemon(8)
// under the pid file is not found (status says not running, stop does
// nothing, start runs a second copy).
func TestRcScriptOldProcname(t *testing.T) {
	v, _ := runRc(t, "", func(s string) string {
		return strings.Replace(s, `procname="/usr/sbin/daemon"`, `procname="/usr/local/bin/chatd"`, 1)
	}, "status")
	if v["procname"] != "/usr/local/bin/chatd" {
		t.Fatalf("edit did not apply: procname %q", v["procname"])
	}
	if v["pidfile_process_found"] != "no" {
		t.Error("a chatd procname matched daemon(8)'s process title")
	}
}

// TestServiceLimitFromRcScript: with nothing in rc.conf, check reads the
// shipped script's default.
func TestServiceLimitFromRcScript(t *testing.T) {
	b, err := os.ReadFile(rcScript)
	if err != nil {
		t.Fatal(err)
	}
	sf := ServiceFiles{RcConf: []string{filepath.Join(t.TempDir(), "rc.conf")}, RcScript: "/nonexistent/chatd", ShippedRc: b}
	lim, err := sf.ServiceLimit("freebsd")
	if err != nil {
		t.Fatal(err)
	}
	if strconv.FormatUint(lim.Value, 10) != strconv.Itoa(files(DefaultConns)) || !strings.Contains(lim.Source, "deploy/chatd.rc") {
		t.Errorf("limit %+v", lim)
	}
}
