package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedNodes != nil {
		for _, n := range sharedNodes {
			n.Close()
		}
		os.RemoveAll(sharedDir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// A cluster takes 1-6 s to form (a route dialled before its peer listens
// is retried a second later; then a meta leader is elected), so the tests
// that leave every node running share one.
var (
	sharedOnce  sync.Once
	sharedNodes []*Node
	sharedErr   error
	sharedDir   string
)

func shared(t *testing.T) []*Node {
	t.Helper()
	sharedOnce.Do(func() {
		if sharedDir, sharedErr = os.MkdirTemp("", "chatd-cluster-"); sharedErr != nil {
			return
		}
		sharedNodes, sharedErr = startNodes(t, 3, func(i int) string { return filepath.Join(sharedDir, fmt.Sprint(i)) })
	})
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return sharedNodes
}

// freeAddrs returns n loopback addresses with free ports (a route list
// must be known before any node starts).
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	for _, ln := range lns {
		ln.Close()
	}
	return out
}

// startCluster starts size nodes n1..nN in this process, concurrently
// (JetStream needs a quorum before any Start returns), and closes them
// when the test ends.
func startCluster(t *testing.T, size int) []*Node {
	t.Helper()
	nodes, err := startNodes(t, size, func(int) string { return t.TempDir() })
	t.Cleanup(func() {
		for _, n := range nodes {
			if n != nil {
				n.Close()
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return nodes
}

func startNodes(t *testing.T, size int, dir func(int) string) ([]*Node, error) {
	addrs := freeAddrs(t, size)
	nodes := make([]*Node, size)
	errs := make([]error, size)
	var wg sync.WaitGroup
	for i := range size {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nodes[i], errs[i] = Start(testConfig(i, addrs, dir(i)))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			for _, n := range nodes {
				if n != nil {
					n.Close()
				}
			}
			return nil, fmt.Errorf("node %d: %w", i+1, err)
		}
	}
	return nodes, nil
}

func testConfig(i int, addrs []string, dir string) Config {
	return Config{
		Node: fmt.Sprintf("n%d", i+1), Listen: addrs[i], Routes: addrs, Dir: dir,
		Secret: "test-secret-0123456789", Heartbeat: 200 * time.Millisecond, OpTimeout: 2 * time.Second, ReadyTimeout: 20 * time.Second,
	}
}

// eventually polls cond every 20 ms until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestClusterFormsAndAgreesOnShards(t *testing.T) {
	nodes := shared(t)
	for _, n := range nodes {
		eventually(t, 5*time.Second, n.Name()+" sees 3 live nodes", func() bool { return len(n.LiveNodes()) == 3 })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var rev uint64
	for _, n := range nodes {
		m, err := n.WaitShards(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if rev == 0 {
			rev = m.Rev
		}
		if m.Rev != rev {
			t.Fatalf("%s read the map at revision %d, another node at %d: two maps were made", n.Name(), m.Rev, rev)
		}
		c := m.Count()
		if len(c) != 3 || c["n1"]+c["n2"]+c["n3"] != Shards || c["n1"] < Shards/3 || c["n3"] < Shards/3 {
			t.Fatalf("shards spread %v", c)
		}
	}
	if h := nodes[0].Home(4097); h != nodes[1].Home(1) || h == "" {
		t.Fatalf("ids 4097 and 1 share shard 1 but have homes %q and %q", h, nodes[1].Home(1))
	}
	st := nodes[2].Status()
	if len(st.Nodes) != 3 || st.ShardMapRev != rev {
		t.Fatalf("status %+v", st)
	}
}

func TestClaimKicksTheOlderSession(t *testing.T) {
	nodes := shared(t)
	kicks := make(chan Kick, 16)
	// OnKick's callback must not block: it hears of every claim made on
	// another node, and later tests on this shared cluster make many.
	if err := nodes[0].OnKick(func(k Kick) {
		select {
		case kicks <- k:
		default:
		}
	}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "n1 sees n2 live", func() bool { return nodes[0].Alive("n2") && nodes[1].Alive("n1") })
	ctx := context.Background()
	s1, err := nodes[0].Claim(ctx, 7, 1)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := nodes[1].Claim(ctx, 7, 1)
	if err != nil {
		t.Fatal(err)
	}
	if s2.Epoch <= s1.Epoch || s2.Node != "n2" {
		t.Fatalf("claims %+v then %+v: the later claim needs the larger epoch", s1, s2)
	}
	select {
	case k := <-kicks:
		if k.User != 7 || k.Device != 1 || k.Epoch != s2.Epoch || k.By != "n2" {
			t.Fatalf("kick %+v, want user 7 epoch %d by n2", k, s2.Epoch)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("n1 was not asked to close its older session")
	}
	got, err := nodes[2].Lookup(ctx, 7, 1)
	if err != nil || got.Node != "n2" || got.Epoch != s2.Epoch {
		t.Fatalf("n3 looks up %+v, %v; want n2 at epoch %d", got, err, s2.Epoch)
	}
	// The replaced session's release changes nothing; the live one's does.
	if err := nodes[0].Release(ctx, 7, 1, s1.Epoch, time.Now()); err != nil {
		t.Fatal(err)
	}
	if got, _ := nodes[2].Lookup(ctx, 7, 1); got.Node != "n2" {
		t.Fatalf("a stale release took the entry: %+v", got)
	}
	seen := time.Now()
	if err := nodes[1].Release(ctx, 7, 1, s2.Epoch, seen); err != nil {
		t.Fatal(err)
	}
	if got, _ := nodes[2].Lookup(ctx, 7, 1); got.Node != "" || got.Since.UnixMilli() != seen.UnixMilli() {
		t.Fatalf("after release: %+v, want offline, last seen %v", got, seen)
	}
}

// Concurrent claims of one user from three nodes: every claim that
// succeeded has its own epoch, the entry names the largest, and a claim
// either succeeded or lost the race.
func TestConcurrentClaimsFenceByEpoch(t *testing.T) {
	nodes := shared(t)
	ctx := context.Background()
	for user := uint64(100); user < 110; user++ {
		var wg sync.WaitGroup
		got := make([]Session, 3)
		errs := make([]error, 3)
		for i, n := range nodes {
			wg.Add(1)
			go func() { defer wg.Done(); got[i], errs[i] = n.Claim(ctx, user, 1) }()
		}
		wg.Wait()
		var best Session
		epochs := map[uint64]bool{}
		for i, err := range errs {
			switch {
			case errors.Is(err, ErrLostRace):
			case err != nil:
				t.Fatalf("claim on n%d: %v", i+1, err)
			default:
				if epochs[got[i].Epoch] {
					t.Fatalf("two claims got epoch %d", got[i].Epoch)
				}
				epochs[got[i].Epoch] = true
				if got[i].Epoch > best.Epoch {
					best = got[i]
				}
			}
		}
		if best.Node == "" {
			t.Fatalf("user %d: every claim lost", user)
		}
		e, err := nodes[0].Lookup(ctx, user, 1)
		if err != nil || e.Node != best.Node || e.Epoch != best.Epoch {
			t.Fatalf("user %d: entry %+v, %v; want the last claim %+v", user, e, err, best)
		}
	}
}

func TestDeadNodesSessionsReadOffline(t *testing.T) {
	nodes := startCluster(t, 3)
	ctx := context.Background()
	eventually(t, 5*time.Second, "n1 sees n3 live", func() bool { return nodes[0].Alive("n3") })
	if _, err := nodes[2].Claim(ctx, 42, 1); err != nil {
		t.Fatal(err)
	}
	if got, err := nodes[0].Lookup(ctx, 42, 1); err != nil || got.Node != "n3" {
		t.Fatalf("lookup %+v, %v", got, err)
	}
	nodes[2].Close()
	// 15 s: if n3 led the bucket, reads wait for a new leader (4-9 s).
	eventually(t, 15*time.Second, "n3's session reads offline", func() bool {
		got, err := nodes[0].Lookup(ctx, 42, 1)
		return err == nil && got.Node == ""
	})
	// Two of three replicas remain: the directory takes claims again once
	// a new leader is elected, if n3 led it (4-9 s).
	var s Session
	eventually(t, 15*time.Second, "a claim with one node down", func() bool {
		var err error
		s, err = nodes[1].Claim(ctx, 42, 1)
		return err == nil
	})
	if s.Node != "n2" {
		t.Fatalf("claim with one node down: %+v", s)
	}
}

func TestStoreDirIsLocked(t *testing.T) {
	nodes := startCluster(t, 1)
	cfg := nodes[0].cfg
	cfg.Node, cfg.Listen = "n9", freeAddrs(t, 1)[0]
	_, err := Start(cfg)
	if err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("a second node on the same store dir: %v, want refused", err)
	}
}

func TestMoveShard(t *testing.T) {
	nodes := shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := nodes[0].WaitShards(ctx)
	if err != nil {
		t.Fatal(err)
	}
	to := "n1"
	if m.OwnerOf(5) == to {
		to = "n2"
	}
	if _, err := nodes[0].Move(ctx, m, 5, to); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		eventually(t, 5*time.Second, n.Name()+" sees shard 5 moved", func() bool { return n.Home(5) == to })
	}
	if _, err := nodes[1].Move(ctx, m, 6, to); err == nil {
		t.Fatal("a move from a stale map was taken")
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{
		{Node: "a", Listen: "127.0.0.1:1", Dir: "x", Secret: "short"},
		{Listen: "127.0.0.1:1", Dir: "x"},
		{Node: "a.b", Listen: "127.0.0.1:1", Dir: "x"},
		{Node: "a", Dir: "x"},
		{Node: "a", Listen: "127.0.0.1:1"},
		{Node: "a", Listen: "nohost", Dir: "x"},
	} {
		if c.Secret == "" {
			c.Secret = "0123456789abcdef"
		}
		c.setDefaults()
		if c.Validate() == nil {
			t.Errorf("%+v validated", c)
		}
	}
}

func TestRequestIsAnsweredOrFailsInTime(t *testing.T) {
	nodes := shared(t)
	release := make(chan struct{})
	err := nodes[1].Handle("echo", func(req []byte, respond func([]byte)) {
		if string(req) == "hold" { // answered later, from another goroutine
			go func() { <-release; respond([]byte("late")) }()
			return
		}
		respond(append([]byte("echo:"), req...))
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// The handler's interest reaches n1 over the routes a moment later.
	var got []byte
	eventually(t, 5*time.Second, "n2 answers", func() bool {
		got, err = nodes[0].Request(ctx, "n2", "echo", []byte("hi"))
		return err == nil
	})
	if string(got) != "echo:hi" {
		t.Fatalf("request: %q", got)
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := nodes[0].Request(short, "n2", "echo", []byte("hold")); !errors.Is(err, ErrNoAnswer) {
		t.Fatalf("unanswered request: %v, want ErrNoAnswer", err)
	}
	close(release)
	if _, err := nodes[0].Request(ctx, "n3", "nothing-here", []byte("x")); !errors.Is(err, ErrNoAnswer) {
		t.Fatalf("request to an op nobody serves: %v, want ErrNoAnswer", err)
	}
	h := nodes[0].Hops()
	if h.Count < 1 || h.Cumulative[len(h.Cumulative)-1] > h.Count {
		t.Fatalf("hop histogram %+v", h)
	}
	if st := nodes[0].Status(); st.Requests.Failed < 2 || st.Requests.Out < 1 {
		t.Fatalf("request stats %+v", st.Requests)
	}
}

func TestSendKeepsOrderAndTimesOut(t *testing.T) {
	nodes := shared(t)
	var mu sync.Mutex
	var got []string
	err := nodes[2].Handle("order", func(req []byte, respond func([]byte)) {
		mu.Lock()
		got = append(got, string(req))
		mu.Unlock()
		if string(req) != "drop" {
			respond(req)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "n3 answers", func() bool {
		_, err := nodes[0].Request(context.Background(), "n3", "order", []byte("probe"))
		return err == nil
	})
	mu.Lock()
	got = nil
	mu.Unlock()
	answers := make(chan string, 200)
	for i := range 100 {
		msg := fmt.Sprint(i)
		if err := nodes[0].Send("n3", "order", []byte(msg), func(reply []byte, err error) {
			if err != nil {
				answers <- "error: " + err.Error()
				return
			}
			answers <- string(reply)
		}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 100 {
		select {
		case a := <-answers:
			if strings.HasPrefix(a, "error") {
				t.Fatal(a)
			}
		case <-time.After(2 * nodes[0].cfg.OpTimeout):
			t.Fatalf("%d of 100 sends never finished", 100-i)
		}
	}
	mu.Lock()
	for i, m := range got {
		if m != fmt.Sprint(i) {
			t.Fatalf("request %d arrived as %q: out of order", i, m)
		}
	}
	mu.Unlock()
	// Unanswered: done gets ErrNoAnswer after OpTimeout.
	errc := make(chan error, 1)
	if err := nodes[0].Send("n3", "order", []byte("drop"), func(_ []byte, err error) { errc <- err }); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrNoAnswer) {
			t.Fatalf("unanswered send: %v", err)
		}
	case <-time.After(2 * nodes[0].cfg.OpTimeout):
		t.Fatal("an unanswered send never finished")
	}
}

// A directory watch that ends (the NATS client gave up on its consumer)
// starts again where it stopped: a claim made on another node while it
// was down still reaches this node. The claim here is written without a
// kick request, as one made while this node was cut off.
func TestSessionWatchResumesWhereItStopped(t *testing.T) {
	nodes := shared(t)
	kicks := make(chan Kick, 64)
	if err := nodes[2].OnKick(func(k Kick) {
		if k.User == 4242 {
			select {
			case kicks <- k:
			default:
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := nodes[2].Claim(ctx, 4242, 1); err != nil {
		t.Fatal(err)
	}
	restarts := nodes[2].counters.watchRestarts.Load()
	for round := 0; round < 3; round++ {
		// The watch may not have started yet on the first round: wait for
		// it to take the signal (it starts within a heartbeat).
		select {
		case nodes[2].endWatch <- struct{}{}:
		case <-time.After(5 * time.Second):
			t.Fatal("the directory watch is not running")
		}
		val, _ := json.Marshal(sessionValue{Node: "n1", Since: time.Now().UnixMilli()})
		rev, err := nodes[0].dir.Put(ctx, sessionKey(4242, 1), val)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case k := <-kicks:
			if k.Epoch != rev || k.By != "n1" {
				t.Fatalf("round %d: kick %+v, want epoch %d by n1", round, k, rev)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("round %d: a claim made while the watch was down never reached n3", round)
		}
	}
	if got := nodes[2].counters.watchRestarts.Load() - restarts; got < 3 {
		t.Fatalf("%d watch restarts counted, want 3", got)
	}
}

// stuckWatcher delivers nothing and never ends: an ordered consumer the
// NATS client is still trying to recreate.
type stuckWatcher struct{ ch chan jetstream.KeyValueEntry }

func (w stuckWatcher) Updates() <-chan jetstream.KeyValueEntry { return w.ch }
func (w stuckWatcher) Stop() error                             { return nil }

// A watch that delivers nothing while the directory has revisions it
// has not seen is given up within a few heartbeats, to be started again
// where it stopped.
func TestStalledSessionWatchIsAbandoned(t *testing.T) {
	nodes := shared(t)
	ctx := context.Background()
	last, err := nodes[1].dirLastRev(ctx)
	if err != nil {
		t.Fatal(err)
	}
	next := last + 1
	if _, err := nodes[0].Claim(ctx, 4343, 1); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	start := time.Now()
	go func() {
		nodes[1].followSessions(ctx, stuckWatcher{make(chan jetstream.KeyValueEntry)}, &next, func(Kick) {})
		close(done)
	}()
	limit := (stallAfter + 3) * nodes[1].cfg.Heartbeat
	select {
	case <-done:
		if next != last+1 {
			t.Fatalf("next moved to %d without a delivery", next)
		}
		t.Logf("a stalled watch was abandoned after %s", time.Since(start).Round(time.Millisecond))
	case <-time.After(limit + 5*time.Second):
		t.Fatalf("a watch that delivers nothing was kept for over %s", limit)
	}
}
