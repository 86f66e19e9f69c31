package bench

import (
	"encoding/json"
	"io"
	"os"
	"time"
)

// Config is shared by every scenario. Zero fields take defaults.
type Config struct {
	// Addr and Admin name a running server. When Addr is empty the bench
	// starts its own server from Binary with a fresh data folder.
	Addr, Admin string
	// Port and AdminPort are the 127.0.0.1 ports of a server the bench
	// starts; 0 picks a free one. Fixed ports let an operator watch it
	// (curl its /stats) or run it beside a server already on the defaults.
	Port, AdminPort int
	// Binary is the chatd executable for the server and the workers.
	// Default: this process's own executable.
	Binary string
	// ServerBinary, when set, is the executable of the server the bench
	// starts, so that two builds of the server are compared with the same
	// clients. Default: Binary.
	ServerBinary string
	// ServerPID is the process id of the server at Addr, when it runs on
	// this host: its CPU time is then read from /proc/PID/stat, from
	// outside, as for the bench's own server. 0: from its /stats.
	ServerPID int
	// ServerArgs are extra flags for a server the bench starts.
	ServerArgs []string
	// ServerEnv are extra environment variables for that server (for
	// example CHATD_NETPOLL_BUFFER=default).
	ServerEnv []string

	Conns     int           // connections to open (connect)
	Rate      int           // connections per second; 0 = as fast as possible
	Hold      time.Duration // how long to hold them once all are up
	PerWorker int           // connections per worker process; default 15000

	CPUProfile time.Duration // connect: profile the server's CPU this long from the storm's start

	Noise bool // clients use the Noise XX transport (else plaintext)
	// WS has clients connect over the WebSocket binding: the bench's own
	// server gets a --ws-addr and clients dial its ws:// URL (with -addr,
	// pass the ws:// URL itself).
	WS     bool
	JSON   bool      // print the result as JSON
	Out    io.Writer // default os.Stdout
	Report string    // folder for profiles and plots; default bench-out
}

func (c *Config) setDefaults() {
	if c.Binary == "" {
		c.Binary, _ = os.Executable()
	}
	if c.PerWorker == 0 {
		c.PerWorker = 15000
	}
	if c.Out == nil {
		c.Out = os.Stdout
	}
	if c.Report == "" {
		c.Report = "bench-out"
	}
}

// printJSON writes v as indented JSON when cfg asks for JSON and reports
// whether it did; every result's Print starts with it.
func printJSON(cfg *Config, v any) bool {
	cfg.setDefaults()
	if !cfg.JSON {
		return false
	}
	e := json.NewEncoder(cfg.Out)
	e.SetIndent("", "  ")
	e.Encode(v)
	return true
}
