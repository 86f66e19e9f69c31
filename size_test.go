package main

import (
	"flag"
	"strings"
	"testing"
)

func TestSizeFlag(t *testing.T) {
	for in, want := range map[string]int64{
		"64MiB": 64 << 20, "1GiB": 1 << 30, "4096": 4096, "512 KiB": 512 << 10, "-1": -1, "100B": 100, "2TiB": 2 << 40,
	} {
		var n int64
		if err := (sizeFlag[int64]{&n}).Set(in); err != nil || n != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, n, err, want)
		}
	}
	for _, in := range []string{"lots", "64MB", "1.5GiB", "9000000TiB", ""} {
		var n int64
		if err := (sizeFlag[int64]{&n}).Set(in); err == nil {
			t.Errorf("Set(%q) accepted: %d", in, n)
		}
	}
	var u uint64
	if err := (sizeFlag[uint64]{&u}).Set("-1"); err == nil {
		t.Errorf("uint64 size took -1: %d", u)
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	var c int64
	sizeVar(fs, &c, "cache", 64<<20, "block cache")
	var out strings.Builder
	fs.SetOutput(&out)
	fs.PrintDefaults()
	if !strings.Contains(out.String(), "(default 64MiB)") {
		t.Errorf("default not in units:\n%s", out.String())
	}
	for n, want := range map[int64]string{4 << 20: "4MiB", 65000: "65000", 1536: "1536", 0: "0"} {
		if got := formatSize(n); got != want {
			t.Errorf("formatSize(%d) = %q, want %q", n, got, want)
		}
	}
}
