package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
)

// workerSet runs the worker processes of one scenario.
type workerSet struct {
	procs []*exec.Cmd
	stdin []io.WriteCloser
	mu    sync.Mutex
	last  []workerReport
	phase chan int // worker index, once per phase report ("registered", "up")
}

// startWorkers spreads n connections over ceil(n/per) processes.
func startWorkers(cfg *Config, addr string, n, rate int, prefix string, extra ...string) (*workerSet, error) {
	k := (n + cfg.PerWorker - 1) / cfg.PerWorker
	ws := &workerSet{last: make([]workerReport, k), phase: make(chan int, 2*k)}
	for w := 0; w < k; w++ {
		share := n / k
		if w < n%k {
			share++
		}
		offset := w*(n/k) + min(w, n%k)
		wrate := 0
		if rate > 0 {
			wrate = max(1, rate/k)
		}
		args := []string{"bench", "worker", "--addr", addr, "--conns", strconv.Itoa(share),
			"--offset", strconv.Itoa(offset), "--rate", strconv.Itoa(wrate), "--prefix", prefix}
		if cfg.Noise {
			args = append(args, "--noise")
		}
		cmd := exec.Command(cfg.Binary, append(args, extra...)...)
		cmd.Stderr = os.Stderr
		in, err := cmd.StdinPipe()
		if err != nil {
			ws.stop()
			return nil, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			ws.stop()
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			ws.stop()
			return nil, fmt.Errorf("bench: start worker: %w", err)
		}
		ws.procs = append(ws.procs, cmd)
		ws.stdin = append(ws.stdin, in)
		go ws.read(w, out)
	}
	return ws, nil
}

func (ws *workerSet) read(w int, out io.Reader) {
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		var r workerReport
		if json.Unmarshal(sc.Bytes(), &r) != nil {
			continue
		}
		ws.mu.Lock()
		ws.last[w] = r
		ws.mu.Unlock()
		if r.Phase != "" {
			ws.phase <- w
		}
	}
}

// reconnects sums the workers' successful reconnects.
func (ws *workerSet) reconnects() int {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	n := 0
	for _, r := range ws.last {
		n += r.Reconnects
	}
	return n
}

// totals sums the latest reports.
func (ws *workerSet) totals() (registered, up int, failed map[string]int) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	failed = map[string]int{}
	for _, r := range ws.last {
		registered += r.Registered
		up += r.Up
		for k, v := range r.Failed {
			failed[k] += v
		}
	}
	return registered, up, failed
}

// waitPhase blocks until every worker reported the end of its current phase.
func (ws *workerSet) waitPhase() {
	for range ws.procs {
		<-ws.phase
	}
}

// begin tells every worker to start the timed phase.
func (ws *workerSet) begin() {
	for _, in := range ws.stdin {
		io.WriteString(in, "go\n")
	}
}

// stop closes the workers' stdin (they close their connections and exit)
// and waits for them.
func (ws *workerSet) stop() {
	for _, in := range ws.stdin {
		in.Close()
	}
	for _, p := range ws.procs {
		p.Wait()
	}
}
