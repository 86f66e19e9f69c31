// Package admin serves a process's operational endpoints on their own
// listener, never on the client port:
//
//	/metrics       Prometheus: the caller's collector plus the Go runtime
//	               and process collectors
//	/stats         a JSON document the caller builds (`chatd bench` reads
//	               it from a server it did not start); ?gc=1 first returns
//	               free heap pages to the OS, to settle a density reading
//	/healthz       the process answers: 200 "ok"
//	/readyz        it takes new clients: 200 "ready", or 503 with the reason
//	(Docs)         further JSON documents the caller names (/cluster)
//	(Actions)      POST endpoints that change something (/cluster/move):
//	               200 with a JSON result, or 409 with the error
//	/debug/pprof/  the runtime profiles
//
// The package knows nothing of chatd's protocol: what to count, when it is
// ready and what /stats holds are the caller's, passed in Config.
package admin

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Config is what the endpoints report. Every field is required.
type Config struct {
	// Metrics is collected on every scrape; nothing is counted through
	// Prometheus between scrapes.
	Metrics prometheus.Collector
	// Ready returns "" when new clients would be taken, else why not.
	Ready func() string
	// Stats returns the /stats document, encoded as JSON.
	Stats func() any
	// Docs are further JSON documents by path (optional): a nil result
	// answers 404.
	Docs map[string]func() any
	// Actions are POST endpoints by path (optional), given the request's
	// form values.
	Actions map[string]func(form map[string][]string) (any, error)
}

// Listen binds addr and serves the endpoints until the returned stop
// func is called.
func Listen(addr string, cfg Config) (net.Addr, func() error, error) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(cfg.Metrics); err != nil {
		return nil, nil, fmt.Errorf("admin: register metrics: %w", err)
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("admin: listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: handler(reg, cfg), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	return ln.Addr(), srv.Close, nil
}

func handler(reg *prometheus.Registry, cfg Config) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("gc") == "1" {
			debug.FreeOSMemory() // settle the heap and return free pages before a density reading
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(cfg.Stats())
	})
	for path, doc := range cfg.Docs {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			v := doc()
			if v == nil {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(v)
		})
	}
	for path, act := range cfg.Actions {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodPost {
				http.Error(w, "POST only", http.StatusMethodNotAllowed)
				return
			}
			if err := r.ParseForm(); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			v, err := act(r.Form)
			if err != nil {
				http.Error(w, err.Error(), http.StatusConflict)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(v)
		})
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if why := cfg.Ready(); why != "" {
			http.Error(w, why, http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
