package main

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func settingsFlags() (*flag.FlagSet, *int, *time.Duration, *string) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(new(strings.Builder))
	n := fs.Int("max-outbound", 4<<20, "")
	d := fs.Duration("keepalive", 3*time.Minute, "")
	a := fs.String("addr", "127.0.0.1:7420", "")
	fs.String("config", "", "")
	return fs, n, d, a
}

func TestSettingsPrecedence(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "chatd.conf")
	os.WriteFile(cfg, []byte("# chatd\nmax-outbound = 1000000\nkeepalive = 90s  # shorter\naddr = \"0.0.0.0:7420\"\n"), 0o644)
	env := map[string]string{"CHATD_KEEPALIVE": "60s"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }

	fs, n, d, a := settingsFlags()
	if err := parseSettings(fs, []string{"--config", cfg, "--addr", "127.0.0.1:9000"}, lookup); err != nil {
		t.Fatal(err)
	}
	if *n != 1000000 || *d != 60*time.Second || *a != "127.0.0.1:9000" {
		t.Fatalf("file, env, flag precedence wrong: outbound=%d keepalive=%v addr=%s", *n, *d, *a)
	}
}

func TestBadSettingsStopStartup(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.conf")
	os.WriteFile(bad, []byte("keepalive = soon\n"), 0o644)
	unknown := filepath.Join(dir, "unknown.conf")
	os.WriteFile(unknown, []byte("keep-alive = 3m\n"), 0o644)
	none := func(string) (string, bool) { return "", false }
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--config", bad}, nil, `bad.conf:1: keepalive = "soon"`},
		{[]string{"--config", unknown}, nil, `unknown setting "keep-alive"`},
		{nil, map[string]string{"CHATD_MAX_OUTBOUND": "lots"}, `CHATD_MAX_OUTBOUND="lots"`},
		{[]string{"--keepalive", "forever"}, nil, `invalid value "forever"`},
		{[]string{"--config", filepath.Join(dir, "missing.conf")}, nil, "missing.conf"},
	} {
		fs, _, _, _ := settingsFlags()
		lookup := none
		if tc.env != nil {
			lookup = func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }
		}
		err := parseSettings(fs, tc.args, lookup)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: error %v, want one mentioning %q", tc.args, tc.env, err, tc.want)
		}
	}
}

// A bad flag comes back as its error and one line of hint; the usage is
// printed only for -h.
func TestBadFlagIsOneHintNotUsage(t *testing.T) {
	none := func(string) (string, bool) { return "", false }
	fs, _, _, _ := settingsFlags()
	var out strings.Builder
	fs.SetOutput(&out)
	fs.Usage = func() { out.WriteString("USAGE\n") }
	err := parseSettings(fs, []string{"--keepalive", "forever"}, none)
	if err == nil || out.Len() != 0 {
		t.Fatalf("error %v, printed %q", err, out.String())
	}
	if lines := strings.Split(err.Error(), "\n"); len(lines) != 2 || lines[1] != `Run "chatd serve -h" for the flags` {
		t.Fatalf("error %q, want the parse error and one hint line", err)
	}
	if err := parseSettings(fs, []string{"-h"}, none); !errors.Is(err, flag.ErrHelp) || out.String() != "USAGE\n" {
		t.Fatalf("-h: error %v, printed %q", err, out.String())
	}
}
