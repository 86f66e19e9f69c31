package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/account"
	"github.com/chatd/chatd/internal/cluster"
	"go.uber.org/zap"
)

// clustering is the server's side of a cluster (package cluster); nil on
// a single node. Every user has a home node, the owner of its home shard
// (cluster.ShardOf of its id; a name's shard, account.NameShard, for a
// registration), which keeps its account and its inbox. A client may
// connect to any node: that node asks the home to do what needs the
// account, and claims the session in the directory, which closes an
// older session of the same user on any node.
type clustering struct {
	node *cluster.Node
	log  *zap.Logger

	// sessions maps a user to its local session's claim, set after the
	// claim and removed when that connection closes: a kick closes the
	// session only if its epoch is older than the kick's.
	sessions sync.Map // uint64 -> *claim

	// releases are directory writes for ended sessions, done by a few
	// workers off the event loop; a full queue drops the write (counted):
	// the entry then names a node with no session, which reads as online
	// until the user's next login or the node's death.
	releases chan release
	wg       sync.WaitGroup

	counters struct {
		claimFailures, releasesDropped, remoteAccount atomic.Uint64
		claimsQueued                                  atomic.Int64 // sessions whose claim is being retried
	}

	// A shard move (move.go): the shards this node stopped being home to
	// while it copies them, and whether a move runs.
	frozen   [cluster.Shards]atomic.Bool
	moving   atomic.Bool
	importMu sync.Mutex // serialises the shard imports this node receives (move.go)

	lists sync.Map // uint64 -> *ownLists: block lists of sessions here of users homed elsewhere (cluster_blocks.go)
}

// claim is a local session's entry in the directory: its epoch (the
// entry's revision), or 0 while the claim is being retried (retryClaim),
// with the session's login time, which kicked compares instead.
type claim struct {
	c     *Conn
	epoch uint64
	since time.Time // the login, for a claim not written yet
}

// outlives reports whether the session of cl stays when kick k arrives:
// k is about an older claim than cl's. A claim not written yet has no
// epoch to compare: it stays against a claim made before its login (the
// watch replaying, after a directory outage, what was written before
// it), which its retry replaces, kicking that node's session then. A
// kick without the claim's time (from an older node) closes it, as it
// did before there was one to compare.
func (cl *claim) outlives(k cluster.Kick) bool {
	if cl.epoch != 0 {
		return cl.epoch >= k.Epoch
	}
	return k.Since != 0 && cl.since.UnixMilli() > k.Since
}

type release struct {
	user, epoch uint64
	at          time.Time
}

const releaseWorkers = 8

// loginClaimTimeout bounds a login's own claim attempt: long enough
// that a loaded node's healthy directory write rarely misses it (a
// missed one is retried, and the retry path leaves a short window in
// which a kick finds no session to close), short enough that a login
// during a directory outage does not wait for the operation timeout.
const loginClaimTimeout = 3 * time.Second

// claimTimeout bounds one retried attempt at a session claim (a healthy
// directory answers in milliseconds).
const claimTimeout = time.Second

// errUnavailable wraps a request that needed a node that did not answer,
// or a cluster not ready to say which node that is: ERROR 63.
var errUnavailable = errors.New("server: a cluster node this needs is unavailable")

func (s *Server) startCluster(cfg *cluster.Config) error {
	node, err := cluster.Start(*cfg)
	if err != nil {
		return err
	}
	// Serve nothing before the shard map is known: a node that took
	// requests without it would refuse each "for now" and let later ones
	// overtake them. A restarting node reads it at once; a new cluster
	// makes it when its nodes are first all live.
	wait := cfg.ReadyTimeout
	if wait == 0 {
		wait = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	_, err = node.WaitShards(ctx)
	cancel()
	if err != nil {
		node.Close()
		return err
	}
	cl := &clustering{node: node, log: s.log.Named("cluster"), releases: make(chan release, 65536)}
	s.cl = cl
	for range releaseWorkers {
		cl.wg.Add(1)
		go cl.releaser()
	}
	if err := node.OnKick(s.kicked); err != nil {
		s.closeCluster()
		return err
	}
	if err := node.Handle("acct", s.serveAccount); err != nil {
		s.closeCluster()
		return err
	}
	if err := node.Handle("keyset", s.serveKeySet); err != nil {
		s.closeCluster()
		return err
	}
	if err := s.startClusterLists(); err != nil {
		s.closeCluster()
		return err
	}
	return nil
}

func (s *Server) closeCluster() {
	if s.cl == nil {
		return
	}
	select { // New failing after the cluster started: Close never ran
	case <-s.closing:
	default:
		close(s.closing)
		s.cancel()
	}
	s.cl.node.Close() // stops the handlers: no request arrives after
	close(s.cl.releases)
	s.cl.wg.Wait()
}

// homeOf names the node that is home to shard, or fails with
// errUnavailable before the cluster has a shard map.
func (s *Server) homeOf(shard int) (string, error) {
	if s.cl.frozen[shard].Load() {
		return "", fmt.Errorf("%w: shard %d is moving to another node", errUnavailable, shard)
	}
	m, ok := s.cl.node.Shards()
	if !ok {
		return "", fmt.Errorf("%w: the cluster has no shard map yet (%d of %d nodes live)", errUnavailable,
			len(s.cl.node.LiveNodes()), s.cl.node.Status().Size)
	}
	return m.OwnerOf(shard), nil
}

// local reports whether user's home is this node (always, on one node).
func (s *Server) local(user uint64) bool {
	if s.cl == nil {
		return true
	}
	h, err := s.homeOf(cluster.ShardOf(user))
	return err == nil && h == s.cl.node.Name()
}

// claimSession records c as user's session in the directory (a cluster
// only), before the router makes it live. A claim that loses a race to
// another node's login fails: that login wins, this one closes. If the
// directory cannot be written (no leader for a few seconds after one
// dies), the session starts anyway and the claim is retried in the
// background: local sessions keep working through a directory outage.
func (s *Server) claimSession(c *Conn, user uint64) error {
	if s.cl == nil {
		return nil
	}
	// A short wait: a directory without a leader must not hold the login
	// for the whole operation timeout; the claim is retried meanwhile.
	start := time.Now() // the login's time: a retry adopts a write of this attempt that landed late
	ctx, cancel := context.WithTimeout(s.ctx(), loginClaimTimeout)
	sess, err := s.cl.node.Claim(ctx, user, 1)
	cancel()
	switch {
	case errors.Is(err, cluster.ErrLostRace):
		return err
	case err != nil:
		s.cl.counters.claimFailures.Add(1)
		s.cl.log.Warn("session claim not written; the session starts and the claim is retried", zap.Uint64("user", user), zap.Error(err))
		s.cl.sessions.Store(user, &claim{c: c, since: start})
		go s.retryClaim(c, user, start)
		return nil
	}
	s.cl.sessions.Store(user, &claim{c: c, epoch: sess.Epoch})
	return nil
}

// retryClaim tries a failed claim again, backing off to 1 s (with
// jitter, so that the claims queued during an outage do not retry in
// step), until it is written or the session ends. A directory without a
// leader comes back within seconds; the session's claim follows within
// a second of that.
func (s *Server) retryClaim(c *Conn, user uint64, since time.Time) {
	s.cl.counters.claimsQueued.Add(1)
	defer s.cl.counters.claimsQueued.Add(-1)
	for wait := 100 * time.Millisecond; !c.State.gone.Load(); wait = min(2*wait, time.Second) {
		select {
		case <-time.After(wait/2 + rand.N(wait/2)):
		case <-s.closing:
			return
		}
		ctx, cancel := context.WithTimeout(s.ctx(), claimTimeout)
		sess, err := s.cl.node.ClaimSince(ctx, user, 1, since)
		cancel()
		if errors.Is(err, cluster.ErrLostRace) { // a later login elsewhere won meanwhile
			s.kick(c, codec.KickElsewhere)
			return
		}
		if err == nil {
			s.cl.sessions.Store(user, &claim{c: c, epoch: sess.Epoch})
			if s.rm != nil && !s.local(user) {
				s.attach(c, user) // again, with the epoch: a later login elsewhere must win over this one
			}
			return
		}
	}
}

// kicked closes the local session a newer claim on another node replaced
// (cluster.Node.OnKick). It runs on a NATS goroutine: the close is quick.
func (s *Server) kicked(k cluster.Kick) {
	v, ok := s.cl.sessions.Load(k.User)
	if !ok {
		// No claim recorded: no session here, or one whose login has not
		// got as far as its claim.
		if c, here := s.sessions.Lookup(k.User); here {
			s.kick(c, codec.KickElsewhere)
		}
		return
	}
	cl := v.(*claim)
	if cl.outlives(k) {
		return
	}
	if s.cl.sessions.CompareAndDelete(k.User, cl) {
		s.kick(cl.c, codec.KickElsewhere)
	}
}

// endSession queues the directory write for a closed session (Closed; on
// the poller, so it only queues).
func (s *Server) endSession(c *Conn, user uint64) {
	if s.cl == nil {
		return
	}
	s.forgetLists(c, user)
	v, ok := s.cl.sessions.Load(user)
	if !ok || v.(*claim).c != c || !s.cl.sessions.CompareAndDelete(user, v) || v.(*claim).epoch == 0 {
		return // no claim of this session's written: nothing to release
	}
	select {
	case s.cl.releases <- release{user: user, epoch: v.(*claim).epoch, at: time.Now()}:
	default:
		s.cl.counters.releasesDropped.Add(1)
	}
}

func (cl *clustering) releaser() {
	defer cl.wg.Done()
	for r := range cl.releases {
		if err := cl.node.Release(context.Background(), r.user, 1, r.epoch, r.at); err != nil {
			cl.log.Debug("session release not written", zap.Uint64("user", r.user), zap.Error(err))
		}
	}
}

// clusterNotReady says why /readyz should fail because of the cluster.
func (s *Server) clusterNotReady() string {
	if s.cl == nil {
		return ""
	}
	if _, ok := s.cl.node.Shards(); !ok {
		_, err := s.homeOf(0)
		return err.Error()
	}
	if n := s.cl.counters.claimsQueued.Load(); n > 0 {
		// Sessions here still work; a load balancer should prefer a node
		// whose logins are recorded at once.
		return fmt.Sprintf("directory unavailable: %d session claims waiting to be written", n)
	}
	return ""
}

// ClusterStatus is what `chatd cluster status` shows (nil on one node).
func (s *Server) ClusterStatus() *cluster.Status {
	if s.cl == nil {
		return nil
	}
	st := s.cl.node.Status()
	return &st
}

// Accounts across nodes: each operation runs at the account's home, the
// owner of the name's shard for REGISTER and LOGIN and of the id's shard
// otherwise (a token carries its user's id). A remote one is an "acct"
// request; password hashing runs at the home.

type acctRequest struct {
	// register, login, resume, revoke, password, lookup, name, exists,
	// and the session ops: sessions, end_session, label, seen
	Op       string      `json:"op"`
	Name     []byte      `json:"name,omitempty"`
	Password []byte      `json:"password,omitempty"`
	Old      []byte      `json:"old,omitempty"`
	Token    codec.Token `json:"token,omitzero"`
	User     uint64      `json:"user,omitempty"`
	Users    []uint64    `json:"users,omitempty"`   // exists
	Addr     string      `json:"addr,omitempty"`    // where a new or resumed session's connection comes from
	Session  uint64      `json:"session,omitempty"` // end_session, label, seen
	Label    []byte      `json:"label,omitempty"`
	Node     string      `json:"node,omitempty"` // delete: the node whose client asked
}

type acctReply struct {
	User     uint64                `json:"user,omitempty"`
	Token    codec.Token           `json:"token,omitzero"`
	Session  uint64                `json:"session,omitempty"`
	Name     []byte                `json:"name,omitempty"`
	Sessions []account.SessionInfo `json:"sessions,omitempty"`
	Blocked  []uint64              `json:"blocked,omitempty"` // a new session's block list (cluster_blocks.go)
	Err      string                `json:"err,omitempty"`     // acctErrs' key
	Detail   string                `json:"detail,omitempty"`
}

// acctErrs are the account errors a reply can carry, by name.
var acctErrs = map[string]error{
	"unknown_user": account.ErrUnknownUser, "wrong_password": account.ErrWrongPassword,
	"name_taken": account.ErrNameTaken, "invalid_name": account.ErrInvalidName,
	"invalid_password": account.ErrInvalidPassword, "invalid_token": account.ErrInvalidToken,
	"busy": account.ErrBusy, "not_home": errNotHome, "unknown_session": account.ErrUnknownSession,
	"token_expired": account.ErrTokenExpired, // also an invalid_token: named first (accountHere)
}

// errNotHome answers a request for a shard this node no longer owns (the
// map moved under the caller): the caller tries again at the new home.
var errNotHome = errors.New("server: this node is not the account's home")

// remoteErr is an account error that came back from another node: it
// unwraps to the account error and says what the home said.
type remoteErr struct {
	kind error
	msg  string
}

func (e *remoteErr) Error() string { return e.msg }
func (e *remoteErr) Unwrap() error { return e.kind }

// account runs op at the account's home: here, or by request.
func (s *Server) account(shard int, req acctRequest) (acctReply, error) {
	if s.cl == nil {
		return s.accountHere(req), nil
	}
	for try := 0; ; try++ {
		home, err := s.homeOf(shard)
		if err != nil {
			return acctReply{}, err
		}
		if home == s.cl.node.Name() {
			return s.accountHere(req), nil
		}
		s.cl.counters.remoteAccount.Add(1)
		data, err := s.cl.node.Request(context.Background(), home, "acct", mustJSON(req))
		if err != nil {
			return acctReply{}, fmt.Errorf("%w: %w", errUnavailable, err)
		}
		var r acctReply
		if err := json.Unmarshal(data, &r); err != nil {
			return acctReply{}, fmt.Errorf("server: account reply from %s: %w", home, err)
		}
		if r.Err != "not_home" || try == 2 {
			return r, nil
		}
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only the plain structs above are marshalled
	}
	return b
}

// accountErr turns a reply's error back into an error.
func accountErr(r acctReply) error {
	if r.Err == "" {
		return nil
	}
	kind, ok := acctErrs[r.Err]
	if !ok {
		return fmt.Errorf("server: account error at home: %s", r.Detail)
	}
	return &remoteErr{kind: kind, msg: r.Detail}
}

// accountHere runs an account operation on this node's store.
func (s *Server) accountHere(req acctRequest) acctReply {
	var r acctReply
	var err error
	switch req.Op {
	case "register":
		var is account.Issued
		if s.cl == nil {
			is, err = s.accounts.Register(req.Name, req.Password, req.Addr)
		} else {
			is, err = s.accounts.RegisterIn(req.Name, req.Password, req.Addr)
		}
		r.User, r.Token, r.Session = is.User, is.Token, is.Session
	case "login":
		is, e := s.accounts.Login(req.Name, req.Password, req.Addr)
		r.User, r.Token, r.Session, err = is.User, is.Token, is.Session, e
	case "resume":
		is, e := s.accounts.Resume(req.Token, req.Addr)
		r.User, r.Token, r.Session, err = is.User, is.Token, is.Session, e
	case "revoke":
		err = s.accounts.Revoke(req.User, req.Token)
	case "password":
		is, e := s.accounts.ChangePassword(req.User, req.Old, req.Password, req.Addr)
		r.User, r.Token, r.Session, err = is.User, is.Token, is.Session, e
	case "sessions":
		r.Sessions, err = s.accounts.Sessions(req.User)
	case "end_session":
		err = s.accounts.EndSession(req.User, req.Session)
	case "label":
		err = s.accounts.Label(req.User, req.Session, req.Label)
	case "seen":
		err = s.accounts.Seen(req.User, req.Session)
	case "delete":
		err = s.deleteAtHome(req.User, req.Password, req.Node)
	case "lookup":
		r.User, err = s.accounts.LookupName(req.Name)
	case "name":
		r.Name, err = s.accounts.Name(req.User)
	case "exists":
		for _, u := range req.Users {
			if !s.accounts.Exists(u) {
				err = fmt.Errorf("%w: user %d does not exist", account.ErrUnknownUser, u)
				break
			}
		}
	default:
		err = fmt.Errorf("server: unknown account op %q", req.Op)
	}
	switch req.Op {
	case "register", "login", "resume", "password":
		if err == nil {
			r.Blocked = s.blocks.List(r.User, codec.ListBlocked)
		}
	}
	if err != nil {
		r.Err, r.Detail = "internal", err.Error()
		if errors.Is(err, account.ErrTokenExpired) {
			r.Err = "token_expired"
			return r
		}
		for name, kind := range acctErrs {
			if errors.Is(err, kind) {
				r.Err = name
				break
			}
		}
	}
	return r
}

// serveAccount answers another node's "acct" request, on its own
// goroutine (hashing takes tens of milliseconds; the account store bounds
// how many run and refuses the rest with ErrBusy).
func (s *Server) serveAccount(data []byte, respond func([]byte)) {
	go func() {
		var req acctRequest
		if err := json.Unmarshal(data, &req); err != nil {
			respond(mustJSON(acctReply{Err: "internal", Detail: err.Error()}))
			return
		}
		shard := cluster.ShardOf(req.User)
		if req.Op == "register" || req.Op == "login" || req.Op == "lookup" {
			shard = account.NameShard(req.Name)
		} else if req.Op == "resume" {
			shard = cluster.ShardOf(account.TokenUser(req.Token))
		} else if req.Op == "exists" && len(req.Users) > 0 {
			shard = cluster.ShardOf(req.Users[0])
			for _, u := range req.Users[1:] {
				if !s.local(u) {
					shard = cluster.ShardOf(u)
					break
				}
			}
		}
		if home, err := s.homeOf(shard); err != nil || home != s.cl.node.Name() {
			respond(mustJSON(acctReply{Err: "not_home", Detail: "not the account's home"}))
			return
		}
		respond(mustJSON(s.accountHere(req)))
	}()
}
