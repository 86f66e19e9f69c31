package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/chatd/chatd/internal/cluster"
	"github.com/chatd/chatd/internal/server"
)

const clusterUsage = `Usage: chatd cluster status [-admin host:port]
       chatd cluster move-shard -shard N -to NODE [-admin host:port]

status      the cluster as one node sees it: its nodes (live or not, shards
            owned), the shard map's revision, directory and request counters.
            Read from the node's admin listener (/cluster).
move-shard  move home shard N (a user's or group's id modulo 4096) to node
            NODE. Run it against the admin listener of the shard's owner:
            it stops taking writes for the shard (clients retry), copies the
            shard's accounts, inboxes and groups to NODE, then flips the
            shard map. Sessions of the shard's users reconnect (GOAWAY 4).
`

func clusterCmd(args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Print(clusterUsage)
		return nil
	}
	switch args[0] {
	case "status":
		return clusterStatus(args[1:])
	case "move-shard":
		return clusterMove(args[1:])
	}
	return fmt.Errorf("cluster: unknown subcommand %q\n\n%s", args[0], clusterUsage)
}

func clusterStatus(args []string) error {
	fs := flag.NewFlagSet("cluster status", flag.ContinueOnError)
	admin := fs.String("admin", "127.0.0.1:7421", "the node's admin address")
	asJSON := fs.Bool("json", false, "print the raw JSON")
	if err := parseFlags(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + *admin + "/cluster")
	if err != nil {
		return fmt.Errorf("cluster status: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return fmt.Errorf("cluster status: the server at %s is a single node (started without -node)", *admin)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("cluster status: %s answered %s", *admin, resp.Status)
	}
	var st cluster.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return fmt.Errorf("cluster status: %w", err)
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	fmt.Printf("node %s, cluster of %d\n", st.Node, st.Size)
	if st.ShardMapRev == 0 {
		fmt.Println("shard map: none yet (made when all nodes are live together)")
	} else {
		fmt.Printf("shard map: revision %d, %d shards\n", st.ShardMapRev, cluster.Shards)
	}
	if st.DirectoryLeader != "" {
		fmt.Printf("directory: stream leader %s\n", st.DirectoryLeader)
	}
	w := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NODE\tADDR\tSTATE\tLAST HEARD\tSHARDS\tUP SINCE")
	for _, n := range st.Nodes {
		state := "dead"
		if n.Live {
			state = "live"
		}
		since := "-"
		if !n.Since.IsZero() && n.Since.Unix() > 0 {
			since = n.Since.Format(time.RFC3339)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\n", n.Name, n.Addr, state, n.LastHeard, n.Shards, since)
	}
	w.Flush()
	d, r := st.Directory, st.Requests
	fmt.Printf("directory: %d claims, %d CAS retries, %d lost races, %d failures, %d heartbeats not written; kicks %d out (%d unanswered), %d in\n",
		d.Claims, d.CASRetries, d.LostRaces, d.Failures, d.HeartbeatMisses, d.KicksOut, d.KicksUnanswered, d.KicksIn)
	fmt.Printf("requests to other nodes: %d answered (mean round trip %s), %d failed, %d refused (too many in flight), %d in flight; %d served\n",
		r.Out, r.MeanTrip, r.Failed, r.Busy, r.InFlight, r.In)
	return nil
}

func clusterMove(args []string) error {
	fs := flag.NewFlagSet("cluster move-shard", flag.ContinueOnError)
	admin := fs.String("admin", "127.0.0.1:7421", "the admin address of the node that owns the shard")
	shard := fs.Int("shard", -1, "the home shard to move (0-4095)")
	to := fs.String("to", "", "the node to move it to")
	if err := parseFlags(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *shard < 0 || *shard >= cluster.Shards || *to == "" {
		return fmt.Errorf("cluster move-shard: -shard 0-%d and -to are required", cluster.Shards-1)
	}
	client := &http.Client{Timeout: 6 * time.Minute}
	resp, err := client.PostForm("http://"+*admin+"/cluster/move", url.Values{"shard": {strconv.Itoa(*shard)}, "to": {*to}})
	if err != nil {
		return fmt.Errorf("cluster move-shard: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("cluster move-shard: %s", strings.TrimSpace(string(body)))
	}
	var rep server.MoveReport
	if err := json.Unmarshal(body, &rep); err != nil {
		return fmt.Errorf("cluster move-shard: %w", err)
	}
	fmt.Printf("shard %d moved from %s to %s: %d records (%d bytes), writes paused %s; shard map revision %d\n",
		rep.Shard, rep.From, rep.To, rep.Records, rep.Bytes, rep.Frozen.Round(time.Millisecond), rep.Revision)
	return nil
}
