package server

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/account"
	"github.com/chatd/chatd/internal/cluster"
	"github.com/chatd/chatd/internal/push"
)

// runChild serves from the folder and address in the environment until
// killed: the crash test's server process.
func runChild() {
	cfg := Config{
		Addr: os.Getenv("CHATD_TEST_ADDR"), DataDir: os.Getenv("CHATD_TEST_DATA"), Plaintext: true,
		Hashing:         account.Hashing{Time: 1, MemoryKiB: 64},
		Quota:           10_000_000, // the test fills one inbox far past the default quotas
		QuotaBytes:      1 << 40,
		LoginsPerSource: -1, FailedLoginsPerUser: -1, MaxFrameRate: -1, MaxByteRate: -1,
		// Cluster push tests post to a receiver in the test process.
		Push: push.Config{Policy: push.Policy{AllowHTTPLoopback: true}, Window: 100 * time.Millisecond},
	}
	if step := os.Getenv("CHATD_TEST_DELETE_HALT"); step != "" { // an account deletion hangs there until the kill
		cfg.deleteStep = func(s string) error {
			if s == step {
				select {}
			}
			return nil
		}
	}
	if hold, err := time.ParseDuration(os.Getenv("CHATD_TEST_NAME_HOLD")); err == nil {
		cfg.NameHold = hold
	}
	if n, err := strconv.Atoi(os.Getenv("CHATD_TEST_DROP_PUSHES")); err == nil { // the first n pushes to other nodes are lost
		var dropped atomic.Int64
		cfg.dropPush = func() bool { return dropped.Add(1) <= int64(n) }
	}
	if n, err := strconv.Atoi(os.Getenv("CHATD_TEST_MAX_REMOTE_SENDS")); err == nil {
		cfg.MaxRemoteSends = n
	}
	if idle, err := time.ParseDuration(os.Getenv("CHATD_TEST_SESSION_IDLE")); err == nil { // the session sweep's tests
		cfg.SessionIdle, cfg.SessionSweep = idle, idle/10
	}
	if path := os.Getenv("CHATD_TEST_LOG"); path != "" { // kept to diagnose a failed cluster test
		log, err := childLogger(path)
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		cfg.Logger = log
	}
	if node := os.Getenv("CHATD_TEST_NODE"); node != "" { // a cluster test's node
		cfg.Cluster = &cluster.Config{Node: node, Listen: os.Getenv("CHATD_TEST_CLUSTER_LISTEN"),
			Routes: strings.Split(os.Getenv("CHATD_TEST_ROUTES"), ","), Secret: "cluster-test-secret",
			Heartbeat: 250 * time.Millisecond, ReadyTimeout: time.Minute}
	}
	s, err := New(cfg)
	if err == nil {
		err = s.Listen()
	}
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	if addr := os.Getenv("CHATD_TEST_ADMIN"); addr != "" {
		if _, _, err := s.Admin(addr); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
	}
	fmt.Println("ready")
	s.Serve()
}

type child struct {
	cmd *exec.Cmd
}

func startChild(t *testing.T, addr, dir string, env ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "CHATD_TEST_CHILD=serve", "CHATD_TEST_ADDR="+addr, "CHATD_TEST_DATA="+dir)
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child server did not start: %q %v", line, err)
	}
	return &child{cmd: cmd}
}

func (c *child) kill9() {
	c.cmd.Process.Signal(syscall.SIGKILL)
	c.cmd.Wait()
}

// crashStart skips a crash test under -short and returns its data
// folder, a free loopback address and a context bounding the test.
func crashStart(t *testing.T) (dir, addr string, ctx context.Context) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts and kills server processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return t.TempDir(), freeAddr(t), ctx
}

// freeAddr returns a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// signInAt registers name at addr, or logs it in if it exists already.
func signInAt(ctx context.Context, t *testing.T, addr, name string) *client.Conn {
	t.Helper()
	c, err := client.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Register(ctx, name, "password-"+name); err != nil {
		if _, err := c.Login(ctx, name, "password-"+name); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	return c
}

// crashSender has c, sender i of a crash test, send "i:j" messages to
// recipient until its connection dies (j counts on from next[i]), and
// records in acked the body of each one answered SENT; mu guards next and
// acked. pace runs before each SEND (j) and says whether to flush it.
func crashSender(c *client.Conn, i int, recipient uint64, mu *sync.Mutex, next []int, acked map[codec.MsgID]string,
	wg *sync.WaitGroup, pace func(j int) (flush bool)) {
	sentIDs := map[codec.MsgID]string{}
	var smu sync.Mutex
	wg.Add(2)
	go func() { // send until the connection dies
		defer wg.Done()
		for {
			mu.Lock()
			j := next[i]
			next[i]++
			mu.Unlock()
			body := fmt.Sprintf("%d:%d", i, j)
			id := client.NewID()
			smu.Lock()
			sentIDs[id] = body
			smu.Unlock()
			if c.SendID(id, 0, recipient, []byte(body), pace(j)) != nil {
				return
			}
		}
	}()
	go func() { // record SENT acks
		defer wg.Done()
		for f := range c.Events() {
			if s, ok := f.(*codec.Sent); ok {
				smu.Lock()
				body := sentIDs[s.ID]
				smu.Unlock()
				mu.Lock()
				acked[s.ID] = body
				mu.Unlock()
			}
		}
	}()
}

// TestCrashLosesNothingAcknowledged runs the server as a child process,
// has several clients send to an offline recipient, kill -9s the server
// mid-load at three different points (restarting it on the same folder in
// between), and then checks that every message that got SENT is delivered,
// exactly once after dropping duplicate ids, in per-sender order.
func TestCrashLosesNothingAcknowledged(t *testing.T) {
	t.Parallel() // most of its time is waiting on other processes; -parallel bounds how many run at once
	dir, addr, ctx := crashStart(t)
	const senders = 6

	var (
		mu    sync.Mutex
		acked = map[codec.MsgID]string{} // id -> body, for every SENT
		next  = make([]int, senders)     // next message number per sender
	)
	srv := startChild(t, addr, dir)
	register := func(name string) *client.Conn { return signInAt(ctx, t, addr, name) }
	rc := register("recipient")
	recipient := rc.Welcome.User
	rc.Close()

	before := 0
	for cycle, killAfter := range []time.Duration{40 * time.Millisecond, 250 * time.Millisecond, 700 * time.Millisecond} {
		var wg sync.WaitGroup
		for i := 0; i < senders; i++ {
			c := register("sender" + strconv.Itoa(i))
			crashSender(c, i, recipient, &mu, next, acked, &wg, func(j int) bool {
				if j%64 == 63 {
					time.Sleep(time.Millisecond) // pacing, so that each kill lands mid-stream
				}
				return j%8 == 7
			})
		}
		time.Sleep(killAfter) // the scenario: kill at this point in the stream, whatever state it is in
		// On a loaded machine a restarted server may not have acknowledged
		// anything yet: wait (bounded) for the first new SENT, so the kill
		// always lands on a stream that is flowing.
		poll(10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(acked) > before })
		srv.kill9()
		wg.Wait()
		mu.Lock()
		t.Logf("cycle %d: killed after %v, %d messages acknowledged so far", cycle, killAfter, len(acked))
		if len(acked) <= before {
			t.Fatalf("cycle %d acknowledged nothing new: the kill point tests nothing", cycle)
		}
		before = len(acked)
		mu.Unlock()
		srv = startChild(t, addr, dir) // must start cleanly after kill -9
	}
	defer srv.kill9()
	if len(acked) == 0 {
		t.Fatal("no message was acknowledged before the kills; the test proves nothing")
	}

	// The recipient drains everything, dropping duplicate ids.
	c := register("recipient")
	defer c.Close()
	got := map[codec.MsgID]bool{}
	last := make([]int, senders)
	for i := range last {
		last[i] = -1
	}
	for {
		select {
		case f := <-c.Events():
			d, ok := f.(*codec.Deliver)
			if !ok {
				continue
			}
			c.Ack(d.Seq, true)
			if got[d.ID] {
				continue
			}
			got[d.ID] = true
			var i, j int
			fmt.Sscanf(string(d.Body), "%d:%d", &i, &j)
			if j <= last[i] {
				t.Fatalf("sender %d: message %d delivered after %d", i, j, last[i])
			}
			last[i] = j
		case <-time.After(2 * time.Second):
			for id, body := range acked {
				if !got[id] {
					t.Fatalf("acknowledged message %q (%v) was lost", body, id)
				}
			}
			t.Logf("%d acknowledged messages all delivered (%d delivered in all)", len(acked), len(got))
			return
		}
	}
}
