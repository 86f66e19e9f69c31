package cluster

import (
	"context"
	"encoding/json"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// The directory watch is the backup for a kick request that did not
// arrive (this node was cut off, or too loaded to answer in time, when
// another node's claim replaced one of its sessions): it turns every
// claim made on another node into a Kick. So it must not miss one. Two
// ways it could, both closed here:
//
//   - The NATS client ends an ordered consumer it cannot recreate (an
//     error other than a timeout while the cluster has no meta leader).
//     A watch started again from "new updates only" would skip the
//     claims made in between; this one resumes at the first revision it
//     has not seen.
//   - The client keeps a consumer it is still trying to recreate, which
//     delivers nothing and never ends. Once a heartbeat the watch asks
//     the stream for its last revision; one that is still not delivered
//     stallAfter heartbeats later means the watch is stuck, and it is
//     started again from where it was.
//
// A restart replays nothing twice that matters: kicks are idempotent
// (fn ignores one for a session it does not hold or that is newer).

// stallAfter is how many heartbeats a revision the stream holds may wait
// for the watch before the watch is restarted. Delivery lags by
// milliseconds when healthy, by a second or so on a starved machine.
const stallAfter = 4

func (n *Node) watchSessions(fn func(Kick)) {
	defer n.wg.Done()
	var next uint64 // the first revision not yet seen; 0 until one is known
	for {
		ctx, cancel := context.WithCancel(n.ctx)
		if next == 0 {
			if last, err := n.dirLastRev(ctx); err == nil {
				next = last + 1
			}
		}
		if next != 0 {
			if w, err := n.dir.WatchAll(ctx, jetstream.ResumeFromRevision(next)); err == nil {
				n.followSessions(ctx, w, &next, fn)
				w.Stop()
			}
		}
		cancel()
		select {
		case <-n.stop:
			return
		case <-time.After(n.cfg.Heartbeat):
		}
		n.counters.watchRestarts.Add(1)
	}
}

// followSessions reports each claim w delivers until w ends, stalls or
// the node closes, advancing *next past every revision delivered.
func (n *Node) followSessions(ctx context.Context, w jetstream.KeyWatcher, next *uint64, fn func(Kick)) {
	t := time.NewTicker(n.cfg.Heartbeat)
	defer t.Stop()
	var awaited uint64 // a revision the stream held at a check, not yet delivered
	var since time.Time
	for {
		select {
		case <-n.stop:
			return
		case <-n.endWatch:
			return
		case <-t.C:
			if awaited != 0 && *next > awaited {
				awaited = 0
			}
			if awaited != 0 {
				if time.Since(since) >= stallAfter*n.cfg.Heartbeat {
					n.log.Warn("directory watch stalled; restarting it where it stopped",
						zap.Uint64("next", *next), zap.Uint64("stream_last", awaited))
					return
				}
				continue
			}
			cctx, cancel := context.WithTimeout(ctx, n.cfg.Heartbeat)
			last, err := n.dirLastRev(cctx)
			cancel()
			if err == nil && last >= *next {
				awaited, since = last, time.Now()
			}
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil { // the end of the (empty) replay
				continue
			}
			*next = max(*next, e.Revision()+1)
			if e.Operation() != jetstream.KeyValuePut {
				continue
			}
			var v sessionValue
			if json.Unmarshal(e.Value(), &v) != nil || v.Node == "" || v.Node == n.cfg.Node {
				continue
			}
			if user, device, ok := parseSessionKey(e.Key()); ok {
				fn(Kick{User: user, Device: device, Epoch: e.Revision(), By: v.Node, Since: v.Since})
			}
		}
	}
}

// dirLastRev is the directory stream's last revision, asked of its
// leader.
func (n *Node) dirLastRev(ctx context.Context) (uint64, error) {
	st, err := n.dir.Status(ctx)
	if err != nil {
		return 0, err
	}
	return st.(*jetstream.KeyValueBucketStatus).StreamInfo().State.LastSeq, nil
}
