package main

import (
	"reflect"
	"strings"
	"testing"

	"github.com/chatd/chatd/bench"
	"github.com/chatd/chatd/internal/server"
)

// TestBenchStatsMatchServer: bench reads /stats into its own struct so as
// not to import the server; both must name the same JSON fields with the
// same types, or a bench report would silently read zeros.
func TestBenchStatsMatchServer(t *testing.T) {
	fields := func(v any) map[string]reflect.Type {
		m := map[string]reflect.Type{}
		rt := reflect.TypeOf(v)
		for i := 0; i < rt.NumField(); i++ {
			name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
			m[name] = rt.Field(i).Type
		}
		return m
	}
	srv, b := fields(server.ProcessStats{}), fields(bench.Stats{})
	for name, st := range srv {
		if bt, ok := b[name]; !ok || bt != st {
			t.Errorf("/stats field %q: server %v, bench %v", name, st, bt)
		}
	}
	for name := range b {
		if _, ok := srv[name]; !ok {
			t.Errorf("bench.Stats field %q is not in the server's /stats", name)
		}
	}
}
