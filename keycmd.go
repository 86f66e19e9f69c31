package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/chatd/chatd/internal/secure"
	"github.com/chatd/chatd/internal/server"
)

const keyUsage = `Usage: chatd key COMMAND [-admin ADDR | -data DIR]

Rotates the server's Noise key (PROTOCOL.md section 8) without asking
anyone to compare keys again:

  rotate   make the next key; the server holds both, and tells clients on
           the old key which key comes next (signed by the old key)
  retire   end the rotation: the next key becomes the only one; clients
           still pinned to the old key are refused and told to verify again
  reload   read the key files again (after they were changed by hand)
  show     the keys the server holds

On a cluster, rotate, retire and reload on one node send the keys it then
holds to every other node, which takes them (writing its own copy of the
key files if it has one), and the command lists each node's answer; a
node that was down misses them: run reload on any other node once it is
back.

With -admin (default) the running server does it; with -data it is done
on the files of a stopped server's data folder (or -noise-key FILE).

Flags:
`

// keyCmd is `chatd key`: rotate, retire, reload or show the server's
// Noise keys, through the running server's admin listener, or on the
// files of a stopped one.
func keyCmd(args []string, stdout io.Writer) error {
	if len(args) < 1 || strings.HasPrefix(args[0], "-") {
		fs := keyFlags(stdout)
		fs.Usage()
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			return flag.ErrHelp
		}
		return errors.New("key: give a command: rotate, retire, reload or show")
	}
	cmd := args[0]
	fs := keyFlags(stdout)
	admin := fs.String("admin", "127.0.0.1:7421", "the running server's admin `address`")
	data := fs.String("data", "", "a stopped server's data `folder` (instead of -admin)")
	keyFile := fs.String("noise-key", "", "a stopped server's key `file` (instead of -admin; default DATA/noise.key)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	var rep server.KeyReport
	var err error
	switch {
	case *data != "" || *keyFile != "":
		path := *keyFile
		if path == "" {
			path = filepath.Join(*data, "noise.key")
		}
		rep, err = keyOffline(cmd, path)
	default:
		rep, err = keyOnline(&http.Client{Timeout: time.Minute}, *admin, cmd)
	}
	if err != nil {
		return err
	}
	printKeys(stdout, cmd, rep)
	return nil
}

func keyFlags(out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("key", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(out, keyUsage)
		fs.PrintDefaults()
	}
	return fs
}

// keyOffline runs cmd on the key files at path.
func keyOffline(cmd, path string) (server.KeyReport, error) {
	var k *secure.Keys
	var err error
	switch cmd {
	case "rotate":
		k, err = secure.Rotate(path, time.Now())
	case "retire":
		k, err = secure.Retire(path)
	case "show", "reload":
		k, _, err = secure.LoadKeys(path)
	default:
		return server.KeyReport{}, fmt.Errorf("key: unknown command %q (rotate, retire, reload, show)", cmd)
	}
	if err != nil {
		return server.KeyReport{}, fmt.Errorf("key %s: %w", cmd, err)
	}
	return server.ReportKeys(k), nil
}

// keyOnline asks the running server at admin to run cmd.
func keyOnline(c *http.Client, admin, cmd string) (server.KeyReport, error) {
	var rep server.KeyReport
	var resp *http.Response
	var err error
	switch cmd {
	case "rotate", "retire", "reload":
		resp, err = c.PostForm("http://"+admin+"/key/"+cmd, nil)
	case "show":
		resp, err = c.Get("http://" + admin + "/keys")
	default:
		return rep, fmt.Errorf("key: unknown command %q (rotate, retire, reload, show)", cmd)
	}
	if err != nil {
		return rep, fmt.Errorf("key %s: %w", cmd, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		msg := strings.TrimSpace(string(body))
		if !strings.HasPrefix(msg, "key ") {
			msg = "key " + cmd + ": " + msg
		}
		return rep, errors.New(msg)
	}
	if err := json.Unmarshal(body, &rep); err != nil {
		return rep, fmt.Errorf("key %s: %w", cmd, err)
	}
	return rep, nil
}

func printKeys(w io.Writer, cmd string, r server.KeyReport) {
	fmt.Fprintf(w, "current key: %s\n", r.Current)
	if r.Next != "" {
		fmt.Fprintf(w, "next key:    %s (valid from %s)\n", r.Next, r.NextFrom.UTC().Format(time.RFC3339))
	}
	for _, k := range r.Retired {
		fmt.Fprintf(w, "retired:     %s\n", k)
	}
	nodes := make([]string, 0, len(r.Nodes))
	for n := range r.Nodes {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	for _, n := range nodes {
		fmt.Fprintf(w, "node %s: %s\n", n, r.Nodes[n])
	}
	switch {
	case cmd == "rotate":
		fmt.Fprintln(w, "clients on the current key are told of the next one; retire the current key once they had time to connect (chatd key retire)")
	case cmd == "retire":
		fmt.Fprintln(w, "clients still pinned to a retired key are refused and told to verify the server's key again")
	}
}
