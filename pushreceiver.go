package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/push/pushtest"
)

// pushReceiverCmd is `chatd push-receiver`: a local Web Push service for
// trying push without a phone. It starts a receiver on loopback, logs in
// as a user, subscribes the receiver as the user's device, disconnects
// (so the user is offline) and prints every push it gets, after checking
// its VAPID signature and decrypting it as a browser would. The server
// must run with -push-allow-http-loopback.
func pushReceiverCmd(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("push-receiver", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:7420", "chatd server address")
	name := fs.String("name", "", "user to receive pushes for (required)")
	password := fs.String("password", "", "its password (env CHATD_PASSWORD)")
	register := fs.Bool("register", false, "register the user first")
	limit := fs.Duration("for", 0, "stop after this long (0: until interrupted)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *password == "" {
		*password = os.Getenv("CHATD_PASSWORD")
	}
	if *name == "" || *password == "" {
		return fmt.Errorf("push-receiver: -name and -password (or CHATD_PASSWORD) are required")
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *limit > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *limit)
		defer cancel()
	}

	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := client.DialTransport(dctx, *addr, codec.TransportNoiseXX, nil)
	if err != nil {
		return err
	}
	defer c.Close()
	auth := c.Login
	if *register {
		auth = c.Register
	}
	if _, err := auth(dctx, *name, *password); err != nil {
		return fmt.Errorf("push-receiver: sign in as %s: %w", *name, err)
	}
	subs, err := c.PushSubscriptions(dctx)
	if err != nil {
		return fmt.Errorf("push-receiver: PUSH_LIST: %w", err)
	}
	if len(subs.Key) == 0 {
		return fmt.Errorf("push-receiver: the server sends no pushes (started with -push=false?)")
	}
	recv := pushtest.New(subs.Key)
	defer recv.Close()
	dev := recv.Device(*name)
	if err := c.PushSubscribe(dctx, dev.Endpoint, dev.P256dh, dev.Auth); err != nil {
		return fmt.Errorf("push-receiver: PUSH_SUBSCRIBE %s: %w (does the server run with -push-allow-http-loopback?)", dev.Endpoint, err)
	}
	c.Close() // offline from now on: what is stored for the user is pushed
	fmt.Fprintf(stdout, "receiving pushes for %s at %s; send it messages from another terminal (Ctrl-C stops)\n", *name, dev.Endpoint)
	seen, bad := 0, 0
	for {
		got, err := recv.Wait(seen+1, time.Second)
		for _, p := range got[seen:] {
			fmt.Fprintf(stdout, "%s push: %s (urgency %s, ttl %ds, topic %s, vapid sub %s)\n",
				p.At.Format("15:04:05.000"), p.Payload, p.Urgency, p.TTL, p.Topic, p.Subject)
		}
		seen = len(got)
		for _, e := range recv.Bad()[bad:] {
			fmt.Fprintf(stdout, "refused a malformed push: %v\n", e)
			bad++
		}
		if err != nil && ctx.Err() != nil {
			return nil
		}
	}
}
