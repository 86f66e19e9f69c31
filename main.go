// Command chatd is a message router for persistent TCP connections.
//
//	chatd serve   run the server (Pebble in a local data folder, nothing else to start)
//	chatd chat    a line-based terminal client, to try chatd in two terminals
//	chatd bench   the C1M benchmark scenarios
//	chatd sysctl  Linux and FreeBSD kernel profiles for millions of sockets
//	chatd cluster the cluster as one node sees it
//	chatd version the build's version, commit and Go release
//
// Run "chatd <command> -h" for a command's flags.
package main

import (
	"fmt"
	"os"

	"github.com/chatd/chatd/internal/version"
)

const usage = `chatd is a message router for persistent TCP connections.

Usage:
  chatd serve [flags]   run the server
  chatd chat [flags]    chat from a terminal
  chatd bench SCENARIO  benchmark a server (connect, route, offline, herd, group, cluster)
  chatd sysctl CMD      kernel profiles for millions of sockets (print, check, apply)
  chatd cluster status  the cluster as one node sees it (nodes, shards, directory)
  chatd backup [flags]  copy a running server's data folder (-admin, -to)
  chatd restore [flags] put a backup in place as a data folder (-from, -data)
  chatd version         the build: version, commit and Go release
  chatd help            this text

Run "chatd <command> -h" to see a command's flags and defaults.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "serve":
		err = serve(args)
	case "chat":
		err = chat(args)
	case "bench":
		err = benchCmd(args)
	case "sysctl":
		err = sysctlCmd(args)
	case "cluster":
		err = clusterCmd(args)
	case "backup":
		err = backupCmd(args)
	case "restore":
		err = restoreCmd(args)
	case "version", "-version", "--version":
		fmt.Println(version.Get())
		return
	case "help", "-h", "--help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "chatd: unknown command %q\n\n%s", cmd, usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "chatd:", err)
		os.Exit(1)
	}
}
