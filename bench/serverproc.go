package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/chatd/chatd/internal/proc"
)

// target is the server under test.
type target struct {
	addr, admin string
	pid         int // of a server the bench did not start (-server-pid), for its CPU time
	proc        *exec.Cmd
	dir         string
	bin         string
	args, env   []string
}

// startTarget starts a server unless cfg names one.
func startTarget(ctx context.Context, cfg *Config) (*target, error) {
	if cfg.Addr != "" {
		if cfg.Admin == "" {
			return nil, fmt.Errorf("bench: -admin is needed with -addr to read the server's stats")
		}
		if cfg.Port != 0 || cfg.AdminPort != 0 {
			return nil, fmt.Errorf("bench: -port and -admin-port are for the bench's own server, not with -addr")
		}
		return &target{addr: cfg.Addr, admin: cfg.Admin, pid: cfg.ServerPID}, nil
	}
	addr, admin, err := ownServerAddrs(cfg)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "chatd-bench-")
	if err != nil {
		return nil, err
	}
	t := &target{addr: addr, admin: admin, dir: dir}
	args := append([]string{"serve", "--addr", t.addr, "--admin", t.admin, "--data", filepath.Join(dir, "data"),
		"--plaintext", "--argon2-memory", "64", "--argon2-time", "1", "--log-level", "warn",
		// A benchmark is one source address opening thousands of sessions
		// and sending flat out: exactly what the abuse limits stop.
		"--logins-per-source", "-1", "--failed-logins-per-user", "-1", "--max-frame-rate", "-1", "--max-byte-rate", "-1"},
		cfg.ServerArgs...)
	if cfg.WS {
		wsAddr := "127.0.0.1:" + freePort()
		args = append(args, "--ws-addr", wsAddr)
		t.addr = "ws://" + wsAddr + "/chatd" // what clients dial; the TCP listener stays idle
	}
	t.bin, t.args, t.env = cfg.Binary, args, append(os.Environ(), cfg.ServerEnv...)
	if cfg.ServerBinary != "" {
		t.bin = cfg.ServerBinary
	}
	if err := t.start(ctx); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return t, nil
}

// start runs the server process and waits until its admin endpoint answers.
func (t *target) start(ctx context.Context) error {
	if err := t.launch(); err != nil {
		return err
	}
	return t.waitUp(ctx, 30*time.Second)
}

// launch runs the server process.
func (t *target) launch() error {
	t.proc = exec.Command(t.bin, t.args...)
	t.proc.Env = t.env
	t.proc.Stdout, t.proc.Stderr = os.Stderr, os.Stderr
	if err := t.proc.Start(); err != nil {
		return fmt.Errorf("bench: start server: %w", err)
	}
	return nil
}

// waitUp waits until the server's admin endpoint answers; it kills the
// server if it does not within wait.
func (t *target) waitUp(ctx context.Context, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		if _, err := t.stats(ctx, false); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			t.proc.Process.Kill()
			t.proc.Wait()
			return fmt.Errorf("bench: server did not come up on %s", t.admin)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// crash kills the server with SIGKILL, dropping every connection at once.
func (t *target) crash() {
	t.proc.Process.Kill()
	t.proc.Wait()
}

func (t *target) stats(ctx context.Context, gc bool) (Stats, error) {
	var s Stats
	url := "http://" + t.admin + "/stats"
	if gc {
		url += "?gc=1"
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

// saveProfile stores the server's heap profile (by allocation site) in path.
func (t *target) saveProfile(ctx context.Context, path string) error {
	return t.download(ctx, "http://"+t.admin+"/debug/pprof/heap?gc=1", path)
}

func (t *target) stop() {
	if t.proc != nil && t.proc.Process != nil {
		t.proc.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { t.proc.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.proc.Process.Kill()
			<-done
		}
	}
	if t.dir != "" {
		os.RemoveAll(t.dir)
	}
}

// ownServerAddrs returns the listen and admin addresses of the server the
// bench starts: the configured ports, or free ones.
func ownServerAddrs(cfg *Config) (addr, admin string, err error) {
	port := func(p int) (string, error) {
		switch {
		case p == 0:
			return "127.0.0.1:" + freePort(), nil
		case p < 0 || p > 65535:
			return "", fmt.Errorf("bench: port %d out of range", p)
		}
		return "127.0.0.1:" + strconv.Itoa(p), nil
	}
	if cfg.Port != 0 && cfg.Port == cfg.AdminPort {
		return "", "", fmt.Errorf("bench: -port and -admin-port are both %d", cfg.Port)
	}
	if addr, err = port(cfg.Port); err != nil {
		return "", "", err
	}
	if admin, err = port(cfg.AdminPort); err != nil {
		return "", "", err
	}
	return addr, admin, nil
}

func freePort() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "0"
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// freePortOn returns a free address on ip (host:port).
func freePortOn(ip string) string {
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		return ip + ":0"
	}
	defer ln.Close()
	return ln.Addr().String()
}

// cpuClock returns a reader of the server's CPU seconds (user + system)
// and where it reads them: /proc/PID/stat from outside the server, when
// the bench started it or was given its pid, so that any server is
// measured the same way; else the cpu_seconds of its /stats.
func (t *target) cpuClock(ctx context.Context) (read func() float64, source string) {
	if pid := t.localPID(); pid > 0 {
		return func() float64 { return proc.CPUSecondsOf(pid) }, fmt.Sprintf("/proc/%d/stat", pid)
	}
	return func() float64 {
		st, err := t.stats(ctx, false)
		if err != nil {
			return 0
		}
		return st.CPUSeconds
	}, "the server's /stats"
}

// rssNow reads the server's resident memory: from /proc/PID/statm when it
// runs here, which costs the server nothing (its /stats reads the Go
// runtime's memory statistics, stopping the world, which a reading taken
// every 100 ms during a timed storm would add to the cost measured).
func (t *target) rssNow(ctx context.Context) (uint64, error) {
	if pid := t.localPID(); pid > 0 {
		return proc.RSSOf(pid), nil
	}
	st, err := t.stats(ctx, false)
	return st.RSS, err
}

// localPID is the server's process id when it can be read from /proc
// here: the bench's own server, or -server-pid; else 0.
func (t *target) localPID() int {
	pid := t.pid
	if t.proc != nil && t.proc.Process != nil {
		pid = t.proc.Process.Pid
	}
	// Resident memory, not CPU time, says the process is there: a process
	// that has run for less than a clock tick reads 0 CPU seconds (the
	// test process itself, now and then, when its test runs first).
	if pid > 0 && proc.RSSOf(pid) > 0 {
		return pid
	}
	return 0
}

// saveCPUProfile stores a CPU profile of the next d of the server in path.
func (t *target) saveCPUProfile(ctx context.Context, path string, d time.Duration) error {
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", t.admin, max(1, int(d.Round(time.Second)/time.Second)))
	return t.download(ctx, url, path)
}

// download stores what the server's admin listener answers at url in path.
func (t *target) download(ctx context.Context, url, path string) error {
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}
