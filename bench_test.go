package main

import (
	"errors"
	"flag"
	"strings"
	"testing"
	"time"
)

// TestBenchHelpListsScenarios: `chatd bench -h` prints the scenario list
// instead of failing on "-h" as a scenario, and every listed scenario
// parses and answers its own -h.
func TestBenchHelpListsScenarios(t *testing.T) {
	for _, h := range []string{"-h", "--help", "help"} {
		var out strings.Builder
		if _, err := parseBench([]string{h}, &out); !errors.Is(err, flag.ErrHelp) {
			t.Fatalf("bench %s: %v", h, err)
		}
		for _, sc := range benchScenarios {
			if !strings.Contains(out.String(), "\n  "+sc+" ") {
				t.Errorf("bench %s does not list %s:\n%s", h, sc, out.String())
			}
		}
	}
	for _, sc := range benchScenarios {
		var out strings.Builder
		if _, err := parseBench([]string{sc, "-h"}, &out); !errors.Is(err, flag.ErrHelp) {
			t.Errorf("bench %s -h: %v", sc, err)
		}
		if !strings.Contains(out.String(), "-port") || !strings.Contains(out.String(), "-admin-port") {
			t.Errorf("bench %s -h lists no -port/-admin-port:\n%s", sc, out.String())
		}
		if _, err := parseBench([]string{sc}, &out); err != nil {
			t.Errorf("bench %s with defaults: %v", sc, err)
		}
	}
}

// TestBenchPortsAndAddr: every scenario's own server takes -port and
// -admin-port; every scenario but herd (which kills its server) takes
// -addr and -admin; the two do not mix.
func TestBenchPortsAndAddr(t *testing.T) {
	for _, sc := range benchScenarios {
		var out strings.Builder
		r, err := parseBench([]string{sc, "-port", "17420", "--admin-port", "17421"}, &out)
		if err != nil {
			t.Fatalf("%s: %v", sc, err)
		}
		if r.scenario != sc || r.cfg.Port != 17420 || r.cfg.AdminPort != 17421 || r.cfg.Addr != "" {
			t.Errorf("%s: parsed %+v", sc, r.cfg)
		}

		r, err = parseBench([]string{sc, "-addr", "127.0.0.1:7420", "-admin", "127.0.0.1:7421"}, &out)
		if sc == "herd" {
			if err == nil {
				t.Errorf("herd accepted -addr: it must start the server it kills")
			}
		} else if err != nil || r.cfg.Addr != "127.0.0.1:7420" || r.cfg.Admin != "127.0.0.1:7421" {
			t.Errorf("%s -addr: %v %+v", sc, err, r)
		}
		if sc == "herd" {
			continue
		}
		if _, err := parseBench([]string{sc, "-addr", "127.0.0.1:7420", "-admin", "127.0.0.1:7421", "-port", "1"}, &out); err == nil {
			t.Errorf("%s accepted -addr with -port", sc)
		}
		if _, err := parseBench([]string{sc, "-addr", "127.0.0.1:7420"}, &out); err == nil {
			t.Errorf("%s accepted -addr without -admin", sc)
		}
	}
	var out strings.Builder
	if _, err := parseBench([]string{"nope"}, &out); err == nil || !strings.Contains(out.String(), "Scenarios:") {
		t.Errorf("unknown scenario: %v, help %q", err, out.String())
	}
	if _, err := parseBench([]string{"route", "extra"}, &out); err == nil {
		t.Error("a stray argument was ignored")
	}
}

// TestBenchServerPID: connect measures a server at -addr from outside
// with -server-pid; the pid names that server, so it needs -addr.
func TestBenchServerPID(t *testing.T) {
	var out strings.Builder
	r, err := parseBench([]string{"connect", "-addr", "127.0.0.1:7420", "-admin", "127.0.0.1:7421", "-server-pid", "42", "-cpu-profile", "3s"}, &out)
	if err != nil || r.cfg.ServerPID != 42 || r.cfg.CPUProfile != 3*time.Second {
		t.Fatalf("parsed %v %+v", err, r)
	}
	if _, err := parseBench([]string{"connect", "-server-pid", "42"}, &out); err == nil {
		t.Error("-server-pid accepted without -addr")
	}
}
