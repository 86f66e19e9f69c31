package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
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

Without -addr the bench starts its own server (a fresh data folder, plaintext,
cheap password hashing). Run "chatd bench SCENARIO -h" for flags.
`

func benchCmd(args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, benchUsage)
		return errors.New("bench: scenario missing")
	}
	if args[0] == "worker" {
		return bench.RunWorker(args[1:])
	}
	var cfg bench.Config
	var recipients, perRecipient, senders, bodySize int
	var rc bench.RouteConfig
	var jitter bool
	var gc bench.GroupConfig
	fs := flag.NewFlagSet("bench "+args[0], flag.ContinueOnError)
	fs.StringVar(&cfg.Addr, "addr", "", "server to test (empty: start one)")
	fs.StringVar(&cfg.Admin, "admin", "", "that server's admin address, for its stats")
	fs.BoolVar(&cfg.JSON, "json", false, "print the result as JSON")
	fs.BoolVar(&cfg.Noise, "noise", false, "clients connect with the Noise XX transport (default plaintext, which the bench's server allows)")
	fs.StringVar(&cfg.Report, "out", "bench-out", "folder for heap profiles and plots")
	serverArgs := fs.String("server-args", "", "extra flags for the server the bench starts, space separated")
	serverEnv := fs.String("server-env", "", "extra environment for that server, e.g. CHATD_NETPOLL_BUFFER=default")
	fs.IntVar(&cfg.PerWorker, "per-worker", 15000, "connections per client worker process (each may open 20,000 files here)")
	switch args[0] {
	case "connect":
		fs.IntVar(&cfg.Conns, "conns", 10000, "connections to open")
		fs.IntVar(&cfg.Rate, "rate", 0, "connections per second (0: flat out)")
		fs.DurationVar(&cfg.Hold, "hold", 0, "hold the connections this long after the ramp")
	case "offline":
		fs.IntVar(&recipients, "recipients", 1000, "offline recipients")
		fs.IntVar(&perRecipient, "msgs", 100, "messages per recipient")
		fs.IntVar(&senders, "senders", 16, "sending clients")
		fs.IntVar(&bodySize, "body", 100, "message body bytes")
	case "group":
		fs.IntVar(&gc.Groups, "groups", 4, "groups")
		fs.IntVar(&gc.Members, "members", 256, "members per group, each a connection")
		fs.IntVar(&gc.Senders, "senders", 4, "sending members per group")
		fs.IntVar(&gc.Window, "window", 8, "group messages per sender waiting for SENT")
		fs.IntVar(&gc.Rate, "rate", 0, "offered group msgs/s over all senders (0: flat out)")
		fs.IntVar(&gc.Body, "body", 100, "message body bytes")
		fs.DurationVar(&gc.Duration, "duration", 10*time.Second, "measured time after a 1 s warm-up")
	case "herd":
		fs.IntVar(&cfg.Conns, "conns", 10000, "connections to hold and drop")
		fs.BoolVar(&jitter, "jitter", true, "clients randomize their reconnect backoff")
	case "route":
		fs.IntVar(&rc.Pairs, "pairs", 64, "sender/receiver pairs")
		fs.IntVar(&rc.Window, "window", 64, "messages in flight per pair")
		fs.IntVar(&rc.Rate, "rate", 0, "offered msgs/s over all pairs (0: flat out)")
		fs.IntVar(&rc.Body, "body", 100, "message body bytes")
		fs.DurationVar(&rc.Duration, "duration", 10*time.Second, "measured time after a 1 s warm-up")
	default:
		fmt.Fprint(os.Stderr, benchUsage)
		return fmt.Errorf("bench: unknown scenario %q", args[0])
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	cfg.ServerArgs = strings.Fields(*serverArgs)
	cfg.ServerEnv = strings.Fields(*serverEnv)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Hour) // every run is bounded
	defer cancel()
	switch args[0] {
	case "connect":
		r, err := bench.Connect(ctx, cfg)
		if err != nil {
			return err
		}
		r.Print(cfg)
	case "group":
		r, err := bench.Group(ctx, cfg, gc)
		if err != nil {
			return err
		}
		r.Print(cfg)
	case "herd":
		r, err := bench.Herd(ctx, cfg, jitter)
		if err != nil {
			return err
		}
		r.Print(cfg)
	case "route":
		r, err := bench.Route(ctx, cfg, rc)
		if err != nil {
			return err
		}
		r.Print(cfg)
	case "offline":
		r, err := bench.Offline(ctx, cfg, recipients, perRecipient, senders, bodySize)
		if err != nil {
			return err
		}
		r.Print(cfg)
	}
	return nil
}
