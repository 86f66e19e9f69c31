package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// The session directory: which node holds each (user, device)'s live
// session. One KV key per (user, device); device is 1 until multi-device
// lands, and keys already carry it so that nothing is rewritten then. The
// KV revision of the key is the session's epoch: it grows across the
// whole bucket, so a larger epoch always means a later claim, on any node.
//
//	key   "u.<user>.<device>"          (decimal, so the nats CLI reads it)
//	value {"node":"n2","since":ms}     node "" once the session ended,
//	                                   since then being its last-seen time

// Session is a directory entry.
type Session struct {
	Node  string    // the node holding the session; "" when none does
	Since time.Time // when it was claimed, or (Node "") when it ended
	Epoch uint64    // the KV revision: a later claim has a larger one
}

type sessionValue struct {
	Node  string `json:"node"`
	Since int64  `json:"since"`
}

// Kick asks a node to close its session for (User, Device) if that
// session's epoch is older than Epoch: a session on node By replaced it.
type Kick struct {
	User   uint64 `json:"user"`
	Device uint32 `json:"device"`
	Epoch  uint64 `json:"epoch"`
	By     string `json:"by"`
	// Since is when the claim behind the kick was made (unix ms; 0 from a
	// node that predates it). A session whose own claim is not written
	// yet has no epoch to compare; it compares its login time with this.
	Since int64 `json:"since,omitempty"`
}

// ErrLostRace is Claim's answer when another node claimed the same
// (user, device) between Claim's read and its write: that login won, this
// one closes.
var ErrLostRace = errors.New("cluster: another login claimed the session first")

// ErrUnavailable wraps a directory operation that could not be made
// (no leader, timeout): the caller serves locally and tries again later.
var ErrUnavailable = errors.New("cluster: directory unavailable")

// claimAttempts bounds a claim's compare-and-set tries.
const claimAttempts = 8

func sessionKey(user uint64, device uint32) string {
	return "u." + strconv.FormatUint(user, 10) + "." + strconv.FormatUint(uint64(device), 10)
}

// Claim makes this node the holder of (user, device)'s session with a
// compare-and-set and returns the new entry, whose Epoch fences the old
// session. The previous holder, if another live node, is asked to close
// its session (Kick); its watch of the directory backs that up. CAS can
// fail without a rival (seen once in ~28K updates here): Claim re-reads,
// and retries if the entry did not change.
func (n *Node) Claim(ctx context.Context, user uint64, device uint32) (Session, error) {
	return n.ClaimSince(ctx, user, device, time.Time{})
}

// ClaimSince is Claim for a login that began at since (a claim retried
// after the directory was unavailable): it loses (ErrLostRace) to an
// entry another node made after since, a later login that must win.
func (n *Node) ClaimSince(ctx context.Context, user uint64, device uint32, since time.Time) (Session, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.OpTimeout)
	defer cancel()
	key := sessionKey(user, device)
	now := time.Now()
	val, _ := json.Marshal(sessionValue{Node: n.cfg.Node, Since: now.UnixMilli()})
	n.counters.claims.Add(1)
	var seen uint64 // the revision the first read saw
	for attempt := 0; ; attempt++ {
		prev, rev, err := n.read(ctx, key)
		if err != nil {
			return Session{}, n.failed(err)
		}
		if !since.IsZero() && prev.Node != "" && prev.Node != n.cfg.Node && prev.Since > since.UnixMilli() {
			n.counters.lostRaces.Add(1)
			return Session{}, ErrLostRace
		}
		switch {
		case attempt == 0 && !since.IsZero() && prev.Node == n.cfg.Node && prev.Since >= since.UnixMilli():
			// An earlier attempt of this login, which timed out, was written
			// after all (the directory was slow to answer). Its kick was
			// never sent and the previous owner is not known: ask every
			// other node; a node without an older session ignores it.
			n.kickOthers(Kick{User: user, Device: device, Epoch: rev, By: n.cfg.Node, Since: prev.Since})
			return Session{Node: n.cfg.Node, Since: time.UnixMilli(prev.Since), Epoch: rev}, nil
		case attempt == 0:
			seen = rev
		case prev.Node == n.cfg.Node && prev.Since == now.UnixMilli():
			// Our write landed after all; whose entry it replaced is not
			// known any more: every other node drops an older session.
			n.kickOthers(Kick{User: user, Device: device, Epoch: rev, By: n.cfg.Node, Since: now.UnixMilli()})
			return Session{Node: n.cfg.Node, Since: now, Epoch: rev}, nil
		case rev != seen && prev.Node != "" && prev.Node != n.cfg.Node:
			// Another node's login wrote meanwhile. (A release, which names
			// no node, or this node's own earlier write is no rival.)
			n.counters.lostRaces.Add(1)
			return Session{}, ErrLostRace
		}
		var epoch uint64
		if rev == 0 {
			epoch, err = n.dir.Create(ctx, key, val)
		} else {
			epoch, err = n.dir.Update(ctx, key, val, rev)
		}
		if err == nil {
			if prev.Node != "" && prev.Node != n.cfg.Node {
				n.kick(prev.Node, Kick{User: user, Device: device, Epoch: epoch, By: n.cfg.Node, Since: now.UnixMilli()})
			}
			return Session{Node: n.cfg.Node, Since: now, Epoch: epoch}, nil
		}
		if !isConflict(err) || attempt == claimAttempts-1 {
			return Session{}, n.failed(err)
		}
		n.counters.casRetries.Add(1)
		// A conflict the next read may not show yet: a rival's write the
		// stream leader has proposed but not applied is refused against,
		// and reads as absent for the milliseconds its commit takes. A
		// short pause lets it land, so the next read sees the rival.
		select {
		case <-time.After(time.Duration(attempt+1) * 2 * time.Millisecond):
		case <-ctx.Done():
			return Session{}, n.failed(ctx.Err())
		}
	}
}

// Release records that this node's session for (user, device), claimed at
// epoch, ended at lastSeen; it does nothing if a later claim replaced it.
func (n *Node) Release(ctx context.Context, user uint64, device uint32, epoch uint64, lastSeen time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.OpTimeout)
	defer cancel()
	val, _ := json.Marshal(sessionValue{Since: lastSeen.UnixMilli()})
	_, err := n.dir.Update(ctx, sessionKey(user, device), val, epoch)
	if isConflict(err) {
		return nil // claimed again since: the newer session owns the entry
	}
	if err != nil {
		return n.failed(err)
	}
	return nil
}

// Lookup reads (user, device)'s entry. An entry on a node that reads as
// dead is returned with Node "": the session is gone with its node.
func (n *Node) Lookup(ctx context.Context, user uint64, device uint32) (Session, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.OpTimeout)
	defer cancel()
	v, rev, err := n.read(ctx, sessionKey(user, device))
	if err != nil {
		return Session{}, n.failed(err)
	}
	s := Session{Node: v.Node, Since: time.UnixMilli(v.Since), Epoch: rev}
	if s.Node != "" && !n.Alive(s.Node) {
		s.Node = ""
	}
	return s, nil
}

// read returns the entry at key and its revision (0: none).
func (n *Node) read(ctx context.Context, key string) (sessionValue, uint64, error) {
	e, err := n.dir.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return sessionValue{}, 0, nil
	}
	if err != nil {
		return sessionValue{}, 0, err
	}
	var v sessionValue
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		return sessionValue{}, 0, fmt.Errorf("cluster: directory entry %s: %w", key, err)
	}
	return v, e.Revision(), nil
}

// isConflict reports a compare-and-set that lost: the key's revision
// was not the one given. Replicated streams report it with another code
// (10164) than single-replica ones (10071), and ErrKeyExists matches only
// the latter.
func isConflict(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case jetstream.JSErrCodeStreamWrongLastSequence, jetstream.JSErrCodeStreamWrongLastSequenceConstant:
			return true
		}
	}
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
}

// failed counts a directory operation that did not happen and wraps it.
func (n *Node) failed(err error) error {
	if errors.Is(err, ErrLostRace) {
		return err
	}
	n.counters.dirFailures.Add(1)
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// OnKick sets what runs when another node's claim replaced a session of
// this node's (a kick request, or the directory watch seeing the newer
// claim). It runs on a NATS callback goroutine and must not block; the
// same kick may arrive twice (request and watch).
func (n *Node) OnKick(fn func(Kick)) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.onKick != nil {
		return errors.New("cluster: OnKick set twice")
	}
	n.onKick = fn
	sub, err := n.nc.Subscribe(kickSubject(n.cfg.Node), func(m *nats.Msg) {
		var k Kick
		if json.Unmarshal(m.Data, &k) == nil {
			n.counters.kicksIn.Add(1)
			fn(k)
		}
		m.Respond(nil)
	})
	if err != nil {
		return fmt.Errorf("cluster: subscribe kicks: %w", err)
	}
	n.subs = append(n.subs, sub)
	n.wg.Add(1)
	go n.watchSessions(fn)
	return nil
}

// kickOthers sends k to every other node this node has heard from.
func (n *Node) kickOthers(k Kick) {
	for _, st := range n.live.snapshot(time.Now()) {
		if st.Name != n.cfg.Node {
			n.kick(st.Name, k)
		}
	}
}

func kickSubject(node string) string { return "chatd.node." + node + ".kick" }

// kick asks node to close its older session, on its own goroutine so
// that a login never waits for another node: three tries a second apart;
// if none is answered the old node is dead or cut off, and its directory
// watch kicks the session when it hears of the claim.
func (n *Node) kick(node string, k Kick) {
	data, _ := json.Marshal(k)
	n.counters.kicksOut.Add(1)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		for try := 0; try < 3; try++ {
			if _, err := n.nc.Request(kickSubject(node), data, time.Second); err == nil {
				return
			} else if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrConnectionDraining) {
				return
			}
			select {
			case <-n.stop:
				return
			default:
			}
		}
		n.counters.kicksUnanswered.Add(1)
		n.log.Debug("kick unanswered", zap.String("node", node), zap.Uint64("user", k.User))
	}()
}

func parseSessionKey(key string) (uint64, uint32, bool) {
	var user uint64
	var device uint32
	if _, err := fmt.Sscanf(key, "u.%d.%d", &user, &device); err != nil {
		return 0, 0, false
	}
	return user, device, true
}
