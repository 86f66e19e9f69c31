package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatd/chatd/codec"
)

// workerReport is one line a worker prints on stdout.
type workerReport struct {
	Registered int            `json:"registered"`
	Up         int            `json:"up"`
	Failed     map[string]int `json:"failed,omitempty"`
	Phase      string         `json:"phase,omitempty"` // "registered", then "up"
	Reconnects int            `json:"reconnects,omitempty"`
}

// RunWorker is `chatd bench worker`. It registers its share of users
// (untimed setup, a few at a time to stay inside the server's hashing
// queue) and reports "registered"; on a "go" line on stdin it opens one
// connection per user, logging in with RESUME as a reconnecting client
// does, and reports "up". It holds the connections, pinging inside the
// keepalive window, until stdin closes.
func RunWorker(args []string) error {
	fs := flag.NewFlagSet("bench worker", flag.ContinueOnError)
	addr := fs.String("addr", "", "server address")
	conns := fs.Int("conns", 0, "connections to open")
	offset := fs.Int("offset", 0, "index of this worker's first connection (user names and source addresses)")
	rate := fs.Int("rate", 0, "connections per second (0: flat out)")
	prefix := fs.String("prefix", "b", "user name prefix")
	parallel := fs.Int("parallel", 128, "connection attempts in flight")
	reconnect := fs.Bool("reconnect", false, "reconnect dropped connections (herd)")
	jitter := fs.Bool("jitter", true, "randomize reconnect backoff")
	useNoise := fs.Bool("noise", false, "connect with the Noise XX transport")
	if err := fs.Parse(args); err != nil {
		return err
	}
	w := &worker{addr: *addr, prefix: *prefix, failed: map[string]int{}, tokens: make([]codec.Token, *conns),
		reconnect: *reconnect, jitter: *jitter, offset: *offset, noise: *useNoise}
	out := json.NewEncoder(os.Stdout)
	var outMu sync.Mutex
	emit := func(phase string) {
		r := w.report(phase)
		outMu.Lock()
		out.Encode(r)
		outMu.Unlock()
	}
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				emit("")
			}
		}
	}()
	w.register(*offset, *conns, 8)
	emit("registered")

	in := bufio.NewScanner(os.Stdin)
	if !in.Scan() || in.Text() != "go" {
		close(stop)
		return nil
	}
	w.open(*offset, *conns, *rate, *parallel)
	if !*reconnect {
		close(stop)
	}
	emit("up")

	eof := make(chan struct{})
	go func() {
		for in.Scan() {
		}
		close(eof)
	}()
	tick := time.NewTicker(45 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-eof:
			w.closeAll()
			return nil
		case <-tick.C:
			w.pingAll()
		}
	}
}

type worker struct {
	addr, prefix string
	reconnect    bool
	jitter       bool
	noise        bool
	offset       int
	registered   atomic.Int64
	up           atomic.Int64
	reconnects   atomic.Int64
	mu           sync.Mutex
	conns        []*rawConn
	failed       map[string]int
	tokens       []codec.Token
}

func (w *worker) report(phase string) workerReport {
	w.mu.Lock()
	defer w.mu.Unlock()
	f := make(map[string]int, len(w.failed))
	for k, v := range w.failed {
		f[k] = v
	}
	return workerReport{Registered: int(w.registered.Load()), Up: int(w.up.Load()), Failed: f, Phase: phase,
		Reconnects: int(w.reconnects.Load())}
}

func (w *worker) fail(reason string) {
	w.mu.Lock()
	w.failed[reason]++
	w.mu.Unlock()
}

// pool runs fn for every index in [offset, offset+n) that want accepts,
// with parallel calls in flight and at most rate starts per second (0: no
// limit).
func pool(offset, n, parallel, rate int, want func(i int) bool, fn func(i int)) {
	jobs := make(chan int)
	var wg sync.WaitGroup
	for p := 0; p < parallel; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				fn(i)
			}
		}()
	}
	var tick <-chan time.Time
	if rate > 0 {
		t := time.NewTicker(time.Second / time.Duration(rate))
		defer t.Stop()
		tick = t.C
	}
	for i := offset; i < offset+n; i++ {
		if !want(i) {
			continue
		}
		if tick != nil {
			<-tick
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
}

// register creates the users, retrying while the server is busy hashing.
func (w *worker) register(offset, n, parallel int) {
	all := func(int) bool { return true }
	pool(offset, n, parallel, 0, all, func(i int) {
		for attempt := 0; ; attempt++ {
			name := fmt.Sprintf("%s%d", w.prefix, i)
			c, reason, tok := w.session(i, &codec.Register{Credentials: codec.Credentials{
				Name: []byte(name), Password: []byte("bench-password")}})
			if c != nil {
				c.close()
				w.tokens[i-offset] = tok
				w.registered.Add(1)
				return
			}
			if reason != "refused: server busy" || attempt > 100 {
				w.fail("register " + reason)
				return
			}
			time.Sleep(time.Duration(10+attempt*10) * time.Millisecond)
		}
	})
}

// open connects every registered user with RESUME, at the given rate.
func (w *worker) open(offset, n, rate, parallel int) {
	registered := func(i int) bool { return w.tokens[i-offset] != (codec.Token{}) }
	pool(offset, n, parallel, rate, registered, func(i int) {
		c, reason, tok := w.session(i, &codec.Resume{Token: w.tokens[i-offset]})
		// A server at its accept rate answers GOAWAY: come back later, as
		// a real client does, with backoff.
		for delay := 100 * time.Millisecond; c == nil && reason == "goaway" && delay < time.Minute; delay *= 2 {
			w.fail(reason)
			time.Sleep(delay/2 + time.Duration(rand.Int64N(int64(delay/2)+1)))
			c, reason, tok = w.session(i, &codec.Resume{Token: w.tokens[i-offset]})
		}
		if c == nil {
			w.fail(reason)
			return
		}
		w.tokens[i-offset] = tok // RESUME rotates the token: the next one needs this
		w.mu.Lock()
		w.conns = append(w.conns, c)
		w.mu.Unlock()
		w.up.Add(1)
		if w.reconnect {
			go w.keep(i, c)
		}
	})
}

// keep watches one connection and, when the server drops it, reconnects
// with exponential backoff (100 ms doubling to 5 s), with or without
// jitter, the way client.Backoff does.
func (w *worker) keep(i int, c *rawConn) {
	for {
		io.Copy(io.Discard, c.br) // returns when the server goes away
		c.close()
		w.up.Add(-1)
		delay := 100 * time.Millisecond
		for {
			d := delay
			if w.jitter {
				d = d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
			}
			time.Sleep(d)
			nc, reason, tok := w.session(i, &codec.Resume{Token: w.tokens[i-w.offset]})
			if nc != nil {
				w.tokens[i-w.offset] = tok // rotated
				c = nc
				w.up.Add(1)
				w.reconnects.Add(1)
				break
			}
			w.fail(reason)
			delay = min(2*delay, 5*time.Second)
		}
	}
}

// session opens connection i from source address 127.0.0.(2 + i%253) and
// authenticates with f; it returns nil and a reason on failure.
func (w *worker) session(i int, f codec.Frame) (*rawConn, string, codec.Token) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := dialRaw(ctx, w.addr, i, f, w.noise)
	if err == nil {
		return c, "", c.w.Token
	}
	var e *codec.Error
	switch {
	case errors.As(err, &e):
		return nil, "refused: " + e.Code.String(), codec.Token{}
	case errors.Is(err, errGoaway):
		return nil, "goaway", codec.Token{}
	}
	return nil, "connect: " + errReason(err), codec.Token{}
}

func (w *worker) pingAll() {
	w.mu.Lock()
	conns := append([]*rawConn(nil), w.conns...)
	w.mu.Unlock()
	for _, c := range conns {
		c.nc.SetWriteDeadline(time.Now().Add(time.Second))
		c.send(&codec.Ping{Nonce: 1}, true)
	}
}

func (w *worker) closeAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.conns {
		c.close()
	}
	w.conns = nil
}

func errReason(err error) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err.Error()
	}
	return err.Error()
}
