// Command chatd is a message router for persistent TCP connections.
//
//	chatd serve   run the server (Pebble in a local data folder, nothing else to start)
//	chatd chat    a line-based terminal client, to try chatd in two terminals
//	chatd bench   the C1M benchmark scenarios
//	chatd sysctl  Linux and FreeBSD kernel profiles for millions of sockets
//	chatd cluster the cluster as one node sees it
//	chatd push-receiver a local Web Push service, to try push notifications
//	chatd key     rotate the server's Noise key without clients verifying it again
//	chatd version the build: module version, commit and Go release
//
// Run "chatd <command> -h" for a command's flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/chatd/chatd/internal/version"
)

const usage = `chatd is a message router for persistent TCP connections.

Usage:
  chatd serve [flags]   run the server
  chatd chat [flags]    chat from a terminal
  chatd bench SCENARIO  benchmark a server (connect, offline, route, herd, group, cluster)
  chatd sysctl CMD      kernel profiles for millions of sockets (print, check, apply)
  chatd cluster status  the cluster as one node sees it (nodes, shards, directory)
  chatd backup [flags]  copy a running server's data folder (-admin, -to)
  chatd restore [flags] put a backup in place as a data folder (-from, -data)
  chatd push-receiver   a local Web Push service: prints the pushes a user gets (-name, -password)
  chatd key CMD [flags] rotate the server's Noise key (rotate, retire, reload, show)
  chatd version         the build: version, commit and Go release (also --version)
  chatd help            this text

Run "chatd <command> -h" to see a command's flags and defaults.
`

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// run is main without the process: it returns the exit status, so tests
// can run commands in-process and read what they print.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) < 1 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch cmd, args := args[0], args[1:]; cmd {
	case "serve":
		err = serve(args)
	case "chat":
		err = chat(args)
	case "bench":
		err = benchCmd(args, stderr)
	case "sysctl":
		err = sysctlCmd(args)
	case "cluster":
		err = clusterCmd(args)
	case "backup":
		err = backupCmd(args)
	case "restore":
		err = restoreCmd(args)
	case "push-receiver":
		err = pushReceiverCmd(context.Background(), args, stdout)
	case "key":
		err = keyCmd(args, stdout)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, version.Get())
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "chatd: unknown command %q\nRun \"chatd help\" for the commands.\n", cmd)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "chatd:", err)
		if errors.As(err, new(usageError)) {
			return 2
		}
		return 1
	}
	return 0
}
