package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/chatd/chatd/bench"
)

const benchUsage = `Usage: chatd bench SCENARIO [flags]

Scenarios:
  connect   ramp N authenticated connections, hold them, report the server's cost per connection
  offline   store M messages for each of N offline recipients, then let all reconnect and drain
  route     P sender/receiver pairs, flat out or at a fixed offered rate: msgs/s, latency, CPU
  herd      hold N connections, kill -9 and restart the server, time how they all come back
  group     groups of 256 with senders in each: fan-out deliveries/s and latency
  cluster   the route load on N cluster nodes it starts on 127.0.0.2 and up, every pair
            across nodes (-cross) or on one: msgs/s, latency, each node's CPU

Tool:
  tail      read a latency dump (mqttload pairs -dump) and say how its tail is
            spread over time, as route does for its own run: chatd bench tail FILE

Without -addr the bench starts its own server (a fresh data folder, plaintext,
cheap password hashing) on 127.0.0.1, at -port and -admin-port or free ports.
Every scenario but herd (which kills its server) runs against a running server
with -addr and -admin instead. Run "chatd bench SCENARIO -h" for flags.
`

// benchScenarios are the scenarios of benchUsage, in its order.
var benchScenarios = []string{"connect", "offline", "route", "herd", "group", "cluster"}

// benchRun is one parsed `chatd bench` command line.
type benchRun struct {
	scenario string
	cfg      bench.Config // every scenario's own flags that fit it (connect, herd)

	recipients, perRecipient, senders, bodySize int // offline

	route   bench.RouteConfig
	group   bench.GroupConfig
	cluster bench.ClusterConfig
	jitter  bool // herd
}

// benchCmd runs `chatd bench`; help and usage errors go to out.
func benchCmd(args []string, out io.Writer) error {
	if len(args) > 0 && args[0] == "worker" {
		return bench.RunWorker(args[1:])
	}
	if len(args) > 0 && args[0] == "tail" {
		return benchTail(args[1:], out)
	}
	r, err := parseBench(args, out)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	return r.run()
}

// parseBench reads a scenario and its flags; help goes to out, and a
// request for it returns flag.ErrHelp.
func parseBench(args []string, out io.Writer) (*benchRun, error) {
	if len(args) == 0 {
		fmt.Fprint(out, benchUsage)
		return nil, errors.New("bench: scenario missing")
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(out, benchUsage)
		return nil, flag.ErrHelp
	}
	r := &benchRun{scenario: args[0]}
	cfg := &r.cfg
	fs := flag.NewFlagSet("bench "+args[0], flag.ContinueOnError)
	fs.SetOutput(out)
	if args[0] != "herd" { // herd kills and restarts its server, so it must own it
		fs.StringVar(&cfg.Addr, "addr", "", "running server to test (empty: start one)")
		fs.StringVar(&cfg.Admin, "admin", "", "that server's admin address, for its stats (needed with -addr)")
	}
	fs.IntVar(&cfg.Port, "port", 0, "port of the server the bench starts, on 127.0.0.1 (0: a free one); not with -addr")
	fs.IntVar(&cfg.AdminPort, "admin-port", 0, "admin port of the server the bench starts (0: a free one); not with -addr")
	fs.BoolVar(&cfg.JSON, "json", false, "print the result as JSON")
	fs.BoolVar(&cfg.WS, "ws", false, "clients connect over the WebSocket binding (the bench's server gets --ws-addr; with -addr, give a ws:// URL)")
	fs.BoolVar(&cfg.Noise, "noise", false, "clients connect with the Noise XX transport (default plaintext, which the bench's server allows)")
	fs.StringVar(&cfg.Report, "out", "bench-out", "folder for heap profiles and plots")
	fs.StringVar(&cfg.ServerBinary, "server-bin", "", "chatd executable for the server the bench starts, to compare builds with the same clients (default: this one)")
	serverArgs := fs.String("server-args", "", "extra flags for the server the bench starts, space separated")
	serverEnv := fs.String("server-env", "", "extra environment for that server, e.g. CHATD_NETPOLL_BUFFER=default")
	fs.IntVar(&cfg.PerWorker, "per-worker", 15000, "connections per client worker process (each may open 20,000 files here)")
	switch args[0] {
	case "connect":
		fs.IntVar(&cfg.Conns, "conns", 10000, "connections to open")
		fs.IntVar(&cfg.Rate, "rate", 0, "connections per second (0: flat out)")
		fs.DurationVar(&cfg.Hold, "hold", 0, "hold the connections this long after the ramp")
		fs.IntVar(&cfg.ServerPID, "server-pid", 0, "pid of the server at -addr, to read its CPU time from /proc/PID/stat (0: from its /stats)")
		fs.DurationVar(&cfg.CPUProfile, "cpu-profile", 0, "profile the server's CPU this long from the start of the storm, into -out (0: no profile)")
	case "offline":
		fs.IntVar(&r.recipients, "recipients", 1000, "offline recipients")
		fs.IntVar(&r.perRecipient, "msgs", 100, "messages per recipient")
		fs.IntVar(&r.senders, "senders", 16, "sending clients")
		fs.IntVar(&r.bodySize, "body", 100, "message body bytes")
	case "group":
		gc := &r.group
		fs.IntVar(&gc.Groups, "groups", 4, "groups")
		fs.IntVar(&gc.Members, "members", 256, "members per group, each a connection")
		fs.IntVar(&gc.Senders, "senders", 4, "sending members per group")
		fs.IntVar(&gc.Window, "window", 8, "group messages per sender waiting for SENT")
		fs.IntVar(&gc.Rate, "rate", 0, "offered group msgs/s over all senders (0: flat out)")
		fs.IntVar(&gc.Body, "body", 100, "message body bytes")
		fs.DurationVar(&gc.Duration, "duration", 10*time.Second, "measured time after a 1 s warm-up")
	case "herd":
		fs.IntVar(&cfg.Conns, "conns", 10000, "connections to hold and drop")
		fs.BoolVar(&r.jitter, "jitter", true, "clients randomize their reconnect backoff")
	case "cluster":
		cc := &r.cluster
		fs.IntVar(&cc.Nodes, "nodes", 3, "cluster nodes to start, on 127.0.0.2 and up")
		fs.BoolVar(&cc.Cross, "cross", true, "every pair across two nodes (false: every pair on one node)")
		fs.IntVar(&cc.Pairs, "pairs", 200, "sender/receiver pairs")
		fs.IntVar(&cc.Window, "window", 32, "messages in flight per pair")
		fs.IntVar(&cc.Rate, "rate", 0, "offered msgs/s over all pairs (0: flat out)")
		fs.IntVar(&cc.Body, "body", 100, "message body bytes")
		fs.DurationVar(&cc.Duration, "duration", 10*time.Second, "measured time after a 1 s warm-up")
	case "route":
		rc := &r.route
		fs.IntVar(&rc.Pairs, "pairs", 64, "sender/receiver pairs")
		fs.IntVar(&rc.Window, "window", 64, "messages in flight per pair")
		fs.IntVar(&rc.Rate, "rate", 0, "offered msgs/s over all pairs (0: flat out)")
		fs.IntVar(&rc.Body, "body", 100, "message body bytes")
		fs.DurationVar(&rc.Duration, "duration", 10*time.Second, "measured time after a 1 s warm-up")
		fs.BoolVar(&rc.SentDelivered, "sent-delivered", true, "senders ask for SENT_DELIVERED (OPTIONS), as the Go client does; false: SENT and a RECEIPT entry")
	default:
		fmt.Fprint(out, benchUsage)
		return nil, fmt.Errorf("bench: unknown scenario %q", args[0])
	}
	if err := parseFlags(fs, args[1:]); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("bench %s: unexpected arguments %q", args[0], fs.Args())
	}
	if cfg.Addr != "" && (cfg.Port != 0 || cfg.AdminPort != 0) {
		return nil, fmt.Errorf("bench %s: -port and -admin-port are for the bench's own server, not with -addr", args[0])
	}
	if cfg.ServerPID != 0 && cfg.Addr == "" {
		return nil, fmt.Errorf("bench %s: -server-pid names the server at -addr; the bench's own server is measured without it", args[0])
	}
	if cfg.Addr != "" && cfg.Admin == "" {
		return nil, fmt.Errorf("bench %s: -admin is needed with -addr to read the server's stats", args[0])
	}
	cfg.ServerArgs = strings.Fields(*serverArgs)
	cfg.ServerEnv = strings.Fields(*serverEnv)
	return r, nil
}

// run runs the scenario, bounded in time, and prints its result.
func (r *benchRun) run() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Hour) // every run is bounded
	defer cancel()
	cfg := r.cfg
	var res interface{ Print(bench.Config) } // every scenario's result
	var err error
	switch r.scenario {
	case "connect":
		res, err = bench.Connect(ctx, cfg)
	case "group":
		res, err = bench.Group(ctx, cfg, r.group)
	case "herd":
		res, err = bench.Herd(ctx, cfg, r.jitter)
	case "route":
		res, err = bench.Route(ctx, cfg, r.route)
	case "cluster":
		res, err = bench.Cluster(ctx, cfg, r.cluster)
	case "offline":
		res, err = bench.Offline(ctx, cfg, r.recipients, r.perRecipient, r.senders, r.bodySize)
	default:
		return nil
	}
	if err != nil {
		return err
	}
	res.Print(cfg)
	return nil
}

// benchTail runs `chatd bench tail`: percentiles and the tail in time of
// another tool's per-message latency dump.
func benchTail(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("bench tail", flag.ContinueOnError)
	fs.SetOutput(out)
	rate := fs.Int("rate", 0, fmt.Sprintf("the offered msgs/s of that run (send gaps are counted from %d up)", bench.MinGapRate))
	skip := fs.Duration("skip", time.Second, "leave out what was sent in the run's first part (its warm-up)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	fs.Usage = func() {
		fmt.Fprintln(out, "Usage: chatd bench tail [flags] FILE  (lines of: index, send time ns, latency ns)")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("bench tail: one FILE wanted")
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		return fmt.Errorf("bench tail: %w", err)
	}
	defer f.Close()
	res, err := bench.Tail(f, *rate, *skip)
	if err != nil {
		return err
	}
	res.Print(bench.Config{JSON: *asJSON, Out: out})
	return nil
}
