package server

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/cluster"
	"github.com/chatd/chatd/internal/group"
	"github.com/chatd/chatd/internal/offline"
	"go.uber.org/zap"
)

// Groups across nodes. A group's home is the owner of its id's shard; a
// group is made at its creator's home (group.Store.CreateIn), which keeps
// its members and gives each of its messages and events their place in
// its order. Everything about a group happens there:
//
//   - "group": a group frame from a session on another node. The home
//     runs it on its commit lane and answers with the frame for the
//     client. The requests of one node to one home are sent in order
//     (cluster.Node.Send), so one client's group frames keep theirs.
//   - "glist": GROUP_LIST asks every node for the user's groups homed there.
//   - a group SEND is a "store" with the group flag, on the sender's
//     stream to that home, so one sender's 1:1 and group messages keep
//     their order.
//   - "fanin": the home's fan-out of group messages and events to the
//     homes of members homed elsewhere (offline's outbox). One request per
//     member home carries a batch; one batch is in flight per node and is
//     retried until answered, so each group's order holds there too. The
//     member home stores the body once and an entry per member (FanIn).
//   - "gtyping": TYPING to a group, checked at its home and relayed with
//     the member list to every other live node.

// groupRemote sends a group frame to the group's home and writes the
// home's answer to c.
func (s *Server) groupRemote(c *Conn, req uint32, key, user uint64, t codec.Type, body []byte) {
	s.frameHome(c, "group", key, user, req, t, body, nil)
}

// frameHome sends user's client frame (t, body) to the home of key on
// op, in order with this node's other requests to that home, and writes
// the home's answer to c; then, if not nil, sees the answer first.
func (s *Server) frameHome(c *Conn, op string, key, user uint64, req uint32, t codec.Type, body []byte, then func(reply []byte)) {
	home, err := s.homeOf(cluster.ShardOf(key))
	if err != nil {
		s.errorTo(c, codec.CodeUnavailable, req, nil, err.Error())
		return
	}
	msg := binary.BigEndian.AppendUint64(make([]byte, 0, 9+len(body)), user)
	msg = append(msg, byte(t))
	msg = append(msg, body...)
	err = s.cl.node.Send(home, op, msg, func(reply []byte, err error) {
		if err != nil || len(reply) == 0 {
			s.errorTo(c, codec.CodeUnavailable, req, nil, "the home node did not answer; retry")
		} else {
			if then != nil {
				then(reply)
			}
			s.reply(c, reply)
		}
		c.Flush()
	})
	if err != nil {
		s.counters.busy.Add(1)
		s.errorTo(c, codec.CodeBusy, req, nil, "too many requests in flight to other nodes; retry")
	}
}

// serveGroup runs another node's group frame here, at the group's home.
func (s *Server) serveGroup(msg []byte, respond func([]byte)) {
	if len(msg) < 9 {
		respond(codec.AppendError(nil, codec.CodeMalformed, 0, nil, "short group request"))
		return
	}
	user, t := binary.BigEndian.Uint64(msg), codec.Type(msg[8])
	f := codec.New(t)
	if f == nil || f.Decode(msg[9:]) != nil {
		respond(codec.AppendError(nil, codec.CodeMalformed, 0, nil, "bad group request from another node"))
		return
	}
	req, key, job := s.groupJob(user, f)
	if job == nil {
		respond(codec.AppendError(nil, codec.CodeMalformed, req, nil, "not a group request"))
		return
	}
	if !s.local(key) {
		respond(codec.AppendError(nil, codec.CodeUnavailable, req, nil, "the group's home moved; retry"))
		return
	}
	if t == codec.TypeGroupCreate && s.storageFull() {
		respond(codec.AppendError(nil, codec.CodeStorageFull, req, nil, "the group's home node's disk is nearly full; retry later"))
		return
	}
	if !s.commits.submit(key, func() { respond(job()) }) {
		s.counters.busy.Add(1)
		respond(codec.AppendError(nil, codec.CodeBusy, req, nil, "too many group requests queued; retry"))
	}
}

// groupListAll answers GROUP_LIST in a cluster: each node lists the
// user's groups homed there.
func (s *Server) groupListAll(req uint32, user uint64) []byte {
	list, err := s.groups.List(user)
	if err != nil {
		return s.groupErrFrame(req, err)
	}
	for _, node := range s.cl.node.LiveNodes() {
		if node == s.cl.node.Name() {
			continue
		}
		reply, err := s.cl.node.Request(s.ctx(), node, "glist", binary.BigEndian.AppendUint64(nil, user))
		if err != nil {
			return codec.AppendError(nil, codec.CodeUnavailable, req, nil, fmt.Sprintf("node %s did not answer; retry", node))
		}
		for len(reply) >= 9 && len(reply) >= 9+int(reply[8]) {
			n := int(reply[8])
			list = append(list, codec.GroupSummary{Group: binary.BigEndian.Uint64(reply), Name: append([]byte(nil), reply[9:9+n]...)})
			reply = reply[9+n:]
		}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Group < list[j].Group })
	return (&codec.Groups{Req: req, Groups: list}).Append(nil)
}

func (s *Server) serveGroupList(req []byte, respond func([]byte)) {
	if len(req) != 8 {
		respond(nil)
		return
	}
	go func() { // List reads the store: off the NATS goroutine
		list, _ := s.groups.List(binary.BigEndian.Uint64(req))
		var out []byte
		for _, g := range list {
			if !s.local(g.Group) {
				continue // left behind by a move: the new home lists it
			}
			out = binary.BigEndian.AppendUint64(out, g.Group)
			out = append(out, byte(len(g.Name)))
			out = append(out, g.Name...)
		}
		respond(out)
	}()
}

// usersExistAt asks the home of users (one home for all) whether they exist.
func (s *Server) usersExistAt(users []uint64) error {
	r, err := s.account(cluster.ShardOf(users[0]), acctRequest{Op: "exists", Users: users})
	if err != nil {
		return err
	}
	if r.Err != "" {
		if r.Err == "unknown_user" {
			return fmt.Errorf("%w: %s", group.ErrInvalid, r.Detail)
		}
		return fmt.Errorf("%w: %s", errUnavailable, r.Detail)
	}
	return nil
}

// --- typing ---------------------------------------------------------------

// groupTypingMsg is a "gtyping": from the typer's node to the group's
// home (no members), or from the home to the other nodes (the members).
func groupTypingMsg(from, gid uint64, state codec.TypingState, members []uint64) []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 17+8*len(members)), from)
	b = binary.BigEndian.AppendUint64(b, gid)
	b = append(b, byte(state))
	for _, m := range members {
		b = binary.BigEndian.AppendUint64(b, m)
	}
	return b
}

func (s *Server) serveGroupTyping(msg []byte, respond func([]byte)) {
	if len(msg) < 17 || (len(msg)-17)%8 != 0 {
		return
	}
	from, gid, state := binary.BigEndian.Uint64(msg), binary.BigEndian.Uint64(msg[8:]), codec.TypingState(msg[16])
	if len(msg) == 17 { // to the home: check, write here, relay
		if g, err := s.groups.Get(gid); err == nil && s.local(gid) {
			s.typingMembers(g, from, state)
		}
		return
	}
	frame := (&codec.IsTyping{From: from, Group: gid, State: state}).Append(nil)
	b := s.batch()
	for rest := msg[17:]; len(rest) > 0; rest = rest[8:] {
		if u := binary.BigEndian.Uint64(rest); u != from {
			if to, ok := s.sessions.Lookup(u); ok && to.Write(frame) {
				b.Add(to)
			}
		}
	}
	s.flush(b)
}

// --- fan-out to other homes -------------------------------------------------

// fanouts sends the outbox's group entries to the homes of their members:
// one queue and one goroutine per destination node.
type fanouts struct {
	s *Server

	mu      sync.Mutex
	queues  map[string]*fanQueue
	pending map[uint64]int // an outbox record's seq -> destinations yet to answer
	bytes   int64          // in all queues

	// applied is, at a member home, the highest seq stored from each
	// (node, group), so that a batch sent again after a lost answer does
	// not store its events twice (messages are deduplicated by id anyway).
	// In memory: after a restart of this node a resent event can repeat.
	appliedMu sync.Mutex
	applied   map[fanSource]uint64
}

type fanSource struct {
	node  string
	group uint64
}

type fanQueue struct {
	items []fanItem
	wake  chan struct{}
}

type fanItem struct {
	seq     uint64
	wire    []byte
	members []uint64
}

// maxFanBatch bounds one "fanin" request; maxFanBytes the queues, past
// which group SENDs are refused for now (ERROR 20) until the member homes
// catch up: the outbox on disk holds it all, but the queues are in memory.
const (
	maxFanBatch = 1 << 20
	maxFanBytes = 256 << 20
)

// full reports whether the queues hold maxFanBytes.
func (fo *fanouts) full() bool {
	fo.mu.Lock()
	defer fo.mu.Unlock()
	return fo.bytes >= maxFanBytes
}

func newFanouts(s *Server) *fanouts {
	return &fanouts{s: s, queues: map[string]*fanQueue{}, pending: map[uint64]int{}, applied: map[fanSource]uint64{}}
}

// add queues f for its members' homes (offline's FanOut, on a lane's
// syncer: it only queues).
func (fo *fanouts) add(f offline.FanOut) {
	s := fo.s
	by := map[string][]uint64{}
	for _, m := range f.Members {
		home, err := s.homeOf(cluster.ShardOf(m))
		if err != nil {
			home = s.cl.node.Name() // cannot happen once serving: the record stays and is sent at the next start
		}
		by[home] = append(by[home], m)
	}
	fo.mu.Lock()
	defer fo.mu.Unlock()
	fo.pending[f.Seq] = len(by)
	for node, members := range by {
		q := fo.queues[node]
		if q == nil {
			q = &fanQueue{wake: make(chan struct{}, 1)}
			fo.queues[node] = q
			s.cl.wg.Add(1)
			go fo.run(node, q)
		}
		q.items = append(q.items, fanItem{seq: f.Seq, wire: f.Wire, members: members})
		fo.bytes += int64(len(f.Wire) + 8*len(members))
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

// run sends node's queue, a batch at a time, each until node answers.
func (fo *fanouts) run(node string, q *fanQueue) {
	s := fo.s
	defer s.cl.wg.Done()
	wait := 100 * time.Millisecond
	for {
		fo.mu.Lock()
		var batch []fanItem
		size := 0
		for _, it := range q.items {
			if size > 0 && size+len(it.wire)+8*len(it.members) > maxFanBatch {
				break
			}
			batch = append(batch, it)
			size += 16 + len(it.wire) + 8*len(it.members)
		}
		fo.mu.Unlock()
		if len(batch) == 0 {
			select {
			case <-s.closing:
				return
			case <-q.wake:
				continue
			}
		}
		if err := fo.send(node, batch); err != nil {
			s.cl.log.Debug("group fan-out not answered; retrying", zap.String("node", node), zap.Error(err))
			select {
			case <-s.closing:
				return
			case <-time.After(wait):
			}
			wait = min(2*wait, 5*time.Second)
			continue
		}
		wait = 100 * time.Millisecond
		fo.mu.Lock()
		q.items = q.items[len(batch):]
		var done []uint64
		for _, it := range batch {
			fo.bytes -= int64(len(it.wire) + 8*len(it.members))
			if fo.pending[it.seq]--; fo.pending[it.seq] == 0 {
				delete(fo.pending, it.seq)
				done = append(done, it.seq)
			}
		}
		fo.mu.Unlock()
		for _, seq := range done {
			if err := s.inbox.FanOutDone(seq); err != nil {
				s.cl.log.Warn("outbox record not deleted: it is sent again at the next start", zap.Error(err))
			}
		}
	}
}

// send is one "fanin" request: | node name len (1) | node name | then per
// item: | seq (8) | wire len (4) | wire | members (4) | member (8 each) |.
func (fo *fanouts) send(node string, batch []fanItem) error {
	s := fo.s
	me := s.cl.node.Name()
	if node == me { // members whose home is now this node (a moved shard)
		items := make([]offline.FanOut, len(batch))
		for i, it := range batch {
			items[i] = offline.FanOut{Seq: it.seq, Wire: it.wire, Members: it.members}
		}
		done := make(chan error, 1)
		if err := s.inbox.FanIn(items, func(err error) { done <- err }); err != nil {
			return err
		}
		return <-done
	}
	req := append([]byte{byte(len(me))}, me...)
	for _, it := range batch {
		req = binary.BigEndian.AppendUint64(req, it.seq)
		req = binary.BigEndian.AppendUint32(req, uint32(len(it.wire)))
		req = append(req, it.wire...)
		req = binary.BigEndian.AppendUint32(req, uint32(len(it.members)))
		for _, m := range it.members {
			req = binary.BigEndian.AppendUint64(req, m)
		}
	}
	reply, err := s.cl.node.Request(s.ctx(), node, "fanin", req)
	if err != nil {
		return err
	}
	if len(reply) != 1 || reply[0] != 0 {
		return fmt.Errorf("server: fan-out refused by %s: %s", node, reply)
	}
	return nil
}

// serveFanIn stores another home's group entries for members homed here
// and answers once they are durable.
func (s *Server) serveFanIn(req []byte, respond func([]byte)) {
	items, src, err := decodeFanIn(req)
	if err != nil {
		respond([]byte(err.Error()))
		return
	}
	fo := s.fo
	fo.appliedMu.Lock()
	fresh := items[:0]
	var from []fanSource // each fresh item's source, for the mark once stored
	for _, it := range items {
		var e offline.Entry
		if _, err := offline.DecodeWire(it.Wire, &e); err != nil {
			continue
		}
		if k := (fanSource{src, e.Group}); it.Seq > fo.applied[k] {
			fresh, from = append(fresh, it), append(from, k)
		}
	}
	fo.appliedMu.Unlock()
	err = s.inbox.FanIn(fresh, func(err error) {
		if err != nil {
			respond([]byte("not stored: " + err.Error()))
			return
		}
		fo.appliedMu.Lock()
		for i, k := range from {
			fo.applied[k] = max(fo.applied[k], fresh[i].Seq)
		}
		fo.appliedMu.Unlock()
		respond([]byte{0})
	})
	if err != nil {
		respond([]byte(err.Error()))
	}
}

var errShortFanIn = errors.New("server: short fan-in request")

func decodeFanIn(req []byte) ([]offline.FanOut, string, error) {
	if len(req) < 1 || len(req) < 1+int(req[0]) {
		return nil, "", errShortFanIn
	}
	src := string(req[1 : 1+req[0]])
	var items []offline.FanOut
	for rest := req[1+req[0]:]; len(rest) > 0; {
		if len(rest) < 12 {
			return nil, "", errShortFanIn
		}
		f := offline.FanOut{Seq: binary.BigEndian.Uint64(rest)}
		n := int(binary.BigEndian.Uint32(rest[8:]))
		rest = rest[12:]
		if len(rest) < n+4 {
			return nil, "", errShortFanIn
		}
		f.Wire, rest = rest[:n], rest[n:]
		m := int(binary.BigEndian.Uint32(rest))
		rest = rest[4:]
		if len(rest) < 8*m {
			return nil, "", errShortFanIn
		}
		f.Members = make([]uint64, m)
		for i := range f.Members {
			f.Members[i] = binary.BigEndian.Uint64(rest[8*i:])
		}
		rest = rest[8*m:]
		items = append(items, f)
	}
	return items, src, nil
}
