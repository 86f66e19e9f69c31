package admin

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestEndpoints serves the endpoints over a real socket and checks that
// each reports what the caller passed in, live, and that stop closes the
// listener.
func TestEndpoints(t *testing.T) {
	hits := prometheus.NewCounter(prometheus.CounterOpts{Name: "test_hits_total", Help: "Hits."})
	var why atomic.Value
	why.Store("")
	var calls atomic.Int64
	addr, stop, err := Listen("127.0.0.1:0", Config{
		Metrics: hits,
		Ready:   func() string { return why.Load().(string) },
		Stats:   func() any { return map[string]int64{"calls": calls.Add(1)} },
	})
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + addr.String()
	defer http.DefaultClient.CloseIdleConnections()

	hits.Add(3)
	if code, text := get(t, base+"/metrics"); code != 200 || !strings.Contains(text, "test_hits_total 3") ||
		!strings.Contains(text, "go_goroutines") || !strings.Contains(text, "process_resident_memory_bytes") {
		t.Fatalf("/metrics: %d\n%s", code, text)
	}
	if code, text := get(t, base+"/healthz"); code != 200 || text != "ok\n" {
		t.Fatalf("/healthz: %d %q", code, text)
	}
	if code, text := get(t, base+"/readyz"); code != 200 || text != "ready\n" {
		t.Fatalf("/readyz ready: %d %q", code, text)
	}
	why.Store("at connection capacity")
	if code, text := get(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(text, "at connection capacity") {
		t.Fatalf("/readyz not ready: %d %q", code, text)
	}
	for i, path := range []string{"/stats", "/stats?gc=1"} {
		code, text := get(t, base+path)
		var doc map[string]int64
		if err := json.Unmarshal([]byte(text), &doc); code != 200 || err != nil || doc["calls"] != int64(i+1) {
			t.Fatalf("%s: %d %q (%v)", path, code, text, err)
		}
	}
	if code, _ := get(t, base+"/debug/pprof/"); code != 200 {
		t.Fatalf("/debug/pprof/: %d", code)
	}

	if err := stop(); err != nil {
		t.Fatal(err)
	}
	http.DefaultClient.CloseIdleConnections()
	if resp, err := http.Get(base + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatal("admin still answers after stop")
	}
}

// TestListenBusyAddress: a taken address is an error, not a silent
// admin-less server.
func TestListenBusyAddress(t *testing.T) {
	cfg := func() Config {
		return Config{Metrics: prometheus.NewCounter(prometheus.CounterOpts{Name: "x", Help: "x"}),
			Ready: func() string { return "" }, Stats: func() any { return nil }}
	}
	addr, stop, err := Listen("127.0.0.1:0", cfg())
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if _, _, err := Listen(addr.String(), cfg()); err == nil || !strings.Contains(err.Error(), "admin: listen") {
		t.Fatalf("second Listen on %s: %v", addr, err)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
