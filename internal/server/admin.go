package server

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"time"

	"github.com/chatd/chatd/internal/admin"
	"github.com/chatd/chatd/internal/proc"
	"github.com/chatd/chatd/internal/secure"
)

// Admin serves the operational endpoints (package admin) on addr, never
// on the client port: /metrics from the server's collector, /readyz from
// admission and the disk, /stats from Process.
func (s *Server) Admin(addr string) (net.Addr, func() error, error) {
	return admin.Listen(addr, admin.Config{
		Metrics: metrics{s},
		Ready:   s.notReady,
		Stats:   func() any { return s.Process() },
		Docs: map[string]func() any{"/keys": func() any { return ReportKeys(s.Keys()) }, "/cluster": func() any {
			if st := s.ClusterStatus(); st != nil {
				return st
			}
			return nil
		}, "/push": func() any { return s.PushInfo() }},
		Actions: map[string]func(map[string][]string) (any, error){
			"/cluster/move": s.moveAction,
			"/backup":       s.backupAction, // chatd backup
			// chatd key rotate|retire|reload (keys.go)
			"/key/rotate": func(map[string][]string) (any, error) { return keyAction(s.rotateKey()) },
			"/key/retire": func(map[string][]string) (any, error) { return keyAction(s.retireKey()) },
			"/key/reload": func(map[string][]string) (any, error) { return keyAction(s.reloadKeys()) },
		},
	})
}

// keyAction answers a key change with the keys and, on a cluster, what
// each other node did.
func keyAction(k *secure.Keys, nodes map[string]string, err error) (any, error) {
	if err != nil {
		return nil, err
	}
	r := ReportKeys(k)
	r.Nodes = nodes
	return r, nil
}

// moveAction runs `chatd cluster move-shard`: POST /cluster/move with
// shard and to.
func (s *Server) moveAction(form map[string][]string) (any, error) {
	get := func(k string) string {
		if v := form[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	shard, err := strconv.Atoi(get("shard"))
	if err != nil {
		return nil, fmt.Errorf("shard: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	return s.MoveShard(ctx, shard, get("to"))
}

// notReady says why the server would refuse a new client now ("" if it
// would not): what /readyz reports to a load balancer.
func (s *Server) notReady() string {
	if why := s.admit.NotReady(); why != "" {
		return why
	}
	if why := s.clusterNotReady(); why != "" {
		return why
	}
	if s.space.Full() {
		// Clients are still let in (to read and acknowledge, which frees
		// space), but a probe should know that new messages fail.
		return "storage full: new messages refused"
	}
	return ""
}

// Process returns counters together with process-level readings.
func (s *Server) Process() admin.Stats {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	st := s.Stats()
	out := admin.Stats{
		Time: time.Now(), Connections: st.Conn.Open, Sessions: st.Sessions, Users: st.Users,
		Goroutines: runtime.NumGoroutine(), RSS: proc.RSS(), HeapAlloc: ms.HeapAlloc, HeapInuse: ms.HeapInuse,
		Sys: ms.Sys, Accepted: st.Conn.Accepted, FramesIn: st.Conn.FramesIn, BytesIn: st.Conn.BytesIn,
		BytesOut: st.Conn.BytesOut, Stored: s.counters.stored.Load(), Pushed: s.counters.pushed.Load(),
		Acked: s.counters.sent.Load(), CPUSeconds: proc.CPUSeconds(), Syscalls: proc.RWSyscalls(),
		ContextSwitches: proc.ContextSwitches(), Turns: st.Conn.Turns, InlineTurns: st.Conn.InlineTurns, Writes: st.Conn.Writes,
		LazyFlushes: st.Conn.LazyFlushes,
	}
	out.InboxCommits, out.InboxRecords = s.inbox.Work()
	out.LiveAcked = s.inbox.Live().Acked
	return out
}
