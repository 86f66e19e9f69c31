package server

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"
	"unsafe"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/cluster"
	"github.com/chatd/chatd/internal/offline"
	"go.uber.org/zap"
)

// Messages across nodes. A user's inbox is at its home; its session may
// be on any node. Four flows, each a request the other node answers once
// its work is done, except the push:
//
//   - store: a SEND to a user homed elsewhere goes to that home, which
//     checks the recipient, commits the entry with its group commit and
//     answers; only then does the sender get SENT. No answer: ERROR 62,
//     and the client resends with DUP (the home deduplicates).
//   - attach: a session of a user homed elsewhere tells the home where it
//     is; the home pushes new entries to that node (deliver, a publish
//     that may be lost: each push names the seq pushed before it, and a
//     session that missed one drains), and the session reads its backlog
//     from the home (read) and acknowledges there (ack).
//   - receipt: a receipt for a sender homed elsewhere (offline's Forward)
//     goes to that home, which stores it; the acknowledged entries are
//     deleted only then.
//   - mark: a READ of a reader homed elsewhere is checked against the
//     read log at the reader's home.
//
// Order: one sender's SENDs leave its node in order (published from its
// connection's event-loop turn), and the home takes them in arrival order.
// A lost one would let a later one be stored first, so each carries the
// number of the one sent to the same home before it; a home that missed
// one refuses the rest (ERROR 63 for that message) and the sender's node
// closes the connection: the client reconnects and resends in order.
type remote struct {
	s *Server

	mu sync.Mutex
	// Where this node is home: users whose session is on another node.
	away map[uint64]*attachment
	// Where this node is home: detaches that came before their attach
	// (the session ended while its attach was on its way, and the two
	// took different paths here): that attach, if it comes, is not
	// taken. Each is forgotten after earlyDetachTTL (sweepEarlyDetaches).
	earlyDetach map[uint64]earlyDetach
	// Where this node holds sessions of users homed elsewhere, by home.
	here       map[string]map[uint64]*Conn
	started    map[string]time.Time // each home's run, as last seen: a change means it forgot attachments
	streams    map[uint64]stream    // at the home: the last store taken from each remote sender
	undrained  map[uint64]bool      // sessions whose last read from their home failed
	unattached map[uint64]bool      // sessions whose attach was not answered
	homeless   map[uint64]*Conn     // sessions whose home was not known at attach (a shard moving)
	// pushed and pushedBefore are the attachments pushed to since the
	// last repair tick and in the tick before it (repairPushes).
	pushed, pushedBefore map[uint64]*attachment

	replies sync.Map // *offline.Message -> func([]byte): stores waiting to answer another node
	// outbound holds the stores of each connection that sent to another
	// home (*Conn -> *sendStream), outside mu: a SEND takes only its own
	// connection's lock, and a connection that never sent away none.
	outbound sync.Map

	receipts chan fwdReceipt // receipts to forward, retried until their home has them
}

type earlyDetach struct {
	sid uint64
	at  time.Time
}

// earlyDetachTTL is how long a home remembers a detach that found no
// attachment: longer than an attach is waited for (the op timeout).
func (s *Server) earlyDetachTTL() time.Duration { return 2 * s.cl.node.OpTimeout() }

// sweepEarlyDetaches forgets the early detaches older than
// earlyDetachTTL (the reattacher, once a second).
func (s *Server) sweepEarlyDetaches() {
	rm := s.rm
	cut := time.Now().Add(-s.earlyDetachTTL())
	rm.mu.Lock()
	for u, d := range rm.earlyDetach {
		if d.at.Before(cut) {
			delete(rm.earlyDetach, u)
		}
	}
	rm.mu.Unlock()
}

type attachment struct {
	node    string
	started time.Time // the node's run, as it says: a later run (cluster.Node.Started) has no such session
	sid     uint64    // the session's id at its node
	epoch   uint64    // its directory epoch: a later attach wins
	last    uint64    // the seq last pushed to it
	nudged  uint64    // the last seq named by a repair (repairPushes)
}

type stream struct{ sid, n uint64 }

// sendStream numbers one connection's stores to other homes.
type sendStream struct {
	mu     sync.Mutex // the event loop sends, NATS callbacks answer
	sid    uint64
	n      uint64            // stores sent so far
	last   map[string]uint64 // the n last sent to each home
	open   map[string]int    // stores to each home not answered, or refused (those count forever)
	flight map[uint64]*flight
	// waiting counts the stores sent or held and not answered yet
	// (Config.MaxRemoteSends).
	waiting int
}

// flight is a connection's stores to one recipient (a user or a group)
// not answered yet. They all go to one home: when the recipient's home
// changes (a shard move) while some are in flight to the old one, the
// next wait until those are answered, since the new home cannot tell
// whether they will be stored. If one is refused for now, the
// connection closes instead, and its client resends them all, in order.
type flight struct {
	home string
	n    int      // in flight to home
	held []func() // stores waiting for them, in order
}

type fwdReceipt struct {
	r    offline.Receipt
	done func()
}

func newRemote(s *Server) *remote {
	return &remote{s: s, away: map[uint64]*attachment{}, earlyDetach: map[uint64]earlyDetach{}, here: map[string]map[uint64]*Conn{},
		started: map[string]time.Time{}, streams: map[uint64]stream{}, undrained: map[uint64]bool{},
		unattached: map[uint64]bool{}, homeless: map[uint64]*Conn{},
		pushed: map[uint64]*attachment{}, pushedBefore: map[uint64]*attachment{},
		receipts: make(chan fwdReceipt, 65536)}
}

// startRemote serves the other nodes' requests (s.rm is made before the
// inbox opens: offline's Forward may run from then on).
func (s *Server) startRemote() error {
	n := s.cl.node
	// The outbox first, so that what it holds goes before any new fan-out
	// of the same group (a group message may arrive once "store" is served).
	if err := s.inbox.Outbox(func(f offline.FanOut) bool { s.fo.add(f); return true }); err != nil {
		return err
	}
	for op, h := range map[string]func([]byte, func([]byte)){
		"store": s.serveStore, "attach": s.serveAttach, "detach": s.serveDetach, "deliver": s.serveDeliver,
		"read": s.serveRead, "inbox": s.serveInbox, "receipt": s.serveReceipt, "typing": s.serveTyping,
		"group": s.serveGroup, "glist": s.serveGroupList, "gtyping": s.serveGroupTyping, "fanin": s.serveFanIn,
		"watch": s.serveWatch, "presence2": s.servePresence, "privacy": s.servePrivacy, "import": s.serveImport,
		"unimport": s.serveUnimport,
	} {
		if err := n.Handle(op, h); err != nil {
			return err
		}
	}
	if err := s.startClusterKeys(); err != nil {
		return err
	}
	if err := s.startClusterPush(); err != nil {
		return err
	}
	s.cl.wg.Add(2)
	go s.forwarder()
	go s.reattacher()
	return nil
}

func randomID() uint64 {
	var b [8]byte
	rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:]) | 1
}

// --- store -------------------------------------------------------------

// sendRemote sends a SEND whose recipient is homed at home, and answers
// the sender when the home does. It runs on c's event-loop turn; start is
// the SEND's arrival (mono), for the SEND-to-SENT histogram.
//
// A fresh SEND (not one held and sent again) counts against the
// connection's bound on stores awaiting other nodes
// (Config.MaxRemoteSends); sendRemote reports false, sending nothing,
// when the bound is reached.
func (s *Server) sendRemote(c *Conn, f *codec.Send, user uint64, home string, start int64, fresh bool) bool {
	ss := s.rm.stream(c)
	ss.mu.Lock()
	if fresh {
		if ss.waiting >= s.cfg.MaxRemoteSends {
			ss.mu.Unlock()
			return false
		}
		ss.waiting++ // landed takes it back, once per store
	}
	fl := ss.flight[f.To]
	if fl == nil {
		fl = &flight{home: home}
		ss.flight[f.To] = fl
	}
	if len(fl.held) > 0 || fl.n > 0 && fl.home != home {
		g := *f
		g.Body = append([]byte(nil), f.Body...)
		fl.held = append(fl.held, func() {
			if now, err := s.homeOf(cluster.ShardOf(g.To)); err == nil {
				s.sendRemote(c, &g, user, now, start, false)
			} else {
				s.errorTo(c, codec.CodeUnavailable, 0, &g.ID, err.Error())
				c.Close()
			}
		})
		ss.mu.Unlock()
		return true
	}
	fl.home = home
	fl.n++
	ss.n++
	n, prev := ss.n, ss.last[home]
	if ss.open[home] == 0 {
		// Every earlier store to this home was taken: none can be missing
		// there, so none is named. A home that restarted since (and so
		// forgot this stream) takes this one rather than finding a gap.
		prev = 0
	}
	ss.open[home]++
	ss.last[home] = n
	ss.mu.Unlock()

	req := make([]byte, 0, 57+len(f.Body))
	for _, v := range []uint64{ss.sid, n, prev, user, f.To} {
		req = binary.BigEndian.AppendUint64(req, v)
	}
	req = append(req, f.ID[:]...)
	req = append(req, byte(f.Flags&(codec.FlagDup|codec.FlagGroup)))
	req = append(req, f.Body...)
	id, to := f.ID, f.To
	err := s.cl.node.Send(home, "store", req, func(reply []byte, err error) {
		s.landed(c, to, s.storeAnswered(c, id, reply, err, start))
	})
	if err != nil {
		s.landed(c, to, false)
		// Not sent; the next might be, and would overtake this one when
		// the client resends it: close, so that it resends both in order.
		s.counters.busy.Add(1)
		s.errorTo(c, codec.CodeBusy, 0, &id, "too many messages in flight to other nodes; reconnect and resend")
		c.Close()
	}
	return true
}

// sendAway is sendRemote for a SEND just read: within the connection's
// bound on stores awaiting other nodes (Config.MaxRemoteSends), else
// refused for now with ERROR 27. It reports false when the connection
// must close (too many recipients held).
func (s *Server) sendAway(c *Conn, f *codec.Send, user uint64, home string) bool {
	if s.sendRemote(c, f, user, home, mono(), true) {
		return true
	}
	s.counters.remoteFull.Add(1)
	return s.refuseForNow(c, f, codec.CodeBusy, "too many messages waiting for other nodes; not stored, retry")
}

// inFlight reports whether c has stores to recipient to in flight to
// another node (or held behind them): a SEND to a recipient homed here
// must then follow them through sendRemote, or it could overtake them.
func (rm *remote) inFlight(c *Conn, to uint64) bool {
	v, ok := rm.outbound.Load(c)
	if !ok {
		return false
	}
	ss := v.(*sendStream)
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.flight[to] != nil
}

// stream returns c's send stream, made on its first store to another home.
func (rm *remote) stream(c *Conn) *sendStream {
	if v, ok := rm.outbound.Load(c); ok {
		return v.(*sendStream)
	}
	v, _ := rm.outbound.LoadOrStore(c, &sendStream{sid: randomID(), last: map[string]uint64{}, open: map[string]int{}, flight: map[uint64]*flight{}})
	return v.(*sendStream)
}

// landed counts an answered store to recipient to; ok false (refused
// for now) closes the connection and drops the stores held behind it.
// Stores held for a new home go once none is in flight to the old one.
func (s *Server) landed(c *Conn, to uint64, ok bool) {
	v, found := s.rm.outbound.Load(c)
	if !found {
		return // the connection closed
	}
	ss := v.(*sendStream)
	ss.mu.Lock()
	ss.waiting--
	fl := ss.flight[to]
	if fl == nil {
		ss.mu.Unlock()
		return
	}
	fl.n--
	if ok {
		// A store refused for now stays open: the next to that home names
		// it, finds the gap, and the client resends both in order.
		ss.open[fl.home]--
	}
	var held []func()
	if !ok {
		fl.held = nil
	} else if fl.n == 0 {
		held, fl.held = fl.held, nil
	}
	if fl.n == 0 && len(fl.held) == 0 && len(held) == 0 {
		delete(ss.flight, to)
	}
	ss.mu.Unlock()
	if !ok {
		c.Close()
		return
	}
	for _, send := range held {
		send() // in order; each may be held again behind the others
	}
	c.Flush()
}

// storeAnswered turns the home's answer into SENT or ERROR for c; false
// if the store was refused for now (the client will resend it).
func (s *Server) storeAnswered(c *Conn, id codec.MsgID, reply []byte, err error, start int64) bool {
	var code codec.Code
	var seqTime uint64
	detail := ""
	switch {
	case err != nil:
		code, detail = codec.CodeUnknownOutcome, "the recipient's home node did not answer: resend with DUP"
	case len(reply) < 10:
		code, detail = codec.CodeInternal, "bad answer from the recipient's home node"
	default:
		code = codec.Code(binary.BigEndian.Uint16(reply))
		seqTime = binary.BigEndian.Uint64(reply[2:])
		detail = string(reply[10:])
	}
	if code != 0 || err != nil {
		if ce := s.cl.log.Check(zap.DebugLevel, "store not taken"); ce != nil { // a refusal storm's: fields built only when kept
			ce.Write(zap.Uint64("user", c.State.user.Load()), zap.Uint64("conn", connID(c)), zap.Stringer("code", code), zap.String("detail", detail), zap.Error(err))
		}
	}
	if code == codec.CodeUnavailable && detail == "gap" {
		// The home missed one of this connection's earlier stores: it takes
		// none after, and the client must resend in order on a new one.
		s.fatal(c, codec.CodeUnavailable, "a message to another node was lost in transit; reconnect and resend")
		return false
	}
	if code == 0 {
		s.counters.sent.Add(1)
		s.lat.sendSent.Observe(time.Duration(mono() - start))
		if buf, ok := c.Begin(); ok {
			c.End((&codec.Sent{ID: id, Time: seqTime}).Append(buf))
		}
	} else {
		s.errorTo(c, code, 0, &id, detail)
	}
	c.Flush()
	// Refused for now: later stores may already be on their way, to this
	// home or (a moved shard) another, and one could be stored before the
	// client resends this one. Closing makes it resend all, in order.
	switch code {
	case codec.CodeUnavailable, codec.CodeBusy, codec.CodeUnknownOutcome, codec.CodeStorageFull:
		return false
	}
	return true
}

// serveStore takes a store request at the recipient's home: it checks
// the order and the recipient, and queues the message; the answer goes
// when it is durable (hooks.Durable calls storeDone).
func (s *Server) serveStore(req []byte, respond func([]byte)) {
	if len(req) < 57 {
		respond(storeReply(codec.CodeMalformed, 0, "short store request"))
		return
	}
	sid, n, prev := binary.BigEndian.Uint64(req), binary.BigEndian.Uint64(req[8:]), binary.BigEndian.Uint64(req[16:])
	from, to := binary.BigEndian.Uint64(req[24:]), binary.BigEndian.Uint64(req[32:])
	var id codec.MsgID
	copy(id[:], req[40:56])
	flags, body := codec.SendFlags(req[56]), req[57:]

	rm := s.rm
	rm.mu.Lock()
	st, known := rm.streams[from]
	// prev 0: the sender has nothing unanswered here, so there is no gap
	// to find (also for a stream this node forgot by restarting).
	inOrder := prev == 0 || known && st.sid == sid && st.n == prev
	rm.mu.Unlock()
	if !inOrder {
		respond(storeReply(codec.CodeUnavailable, 0, "gap"))
		return
	}
	// The stream moves on only past a message taken (stored, or refused
	// for good): after one refused for now, which its client will resend,
	// the next one finds a gap, and the client resends both in order.
	advance := func() {
		rm.mu.Lock()
		rm.streams[from] = stream{sid: sid, n: n}
		rm.mu.Unlock()
	}
	switch {
	case !s.local(to):
		respond(storeReply(codec.CodeUnavailable, 0, "this node is not the recipient's home (the shard map moved); retry"))
		return
	case s.space.Full():
		s.counters.storageFull.Add(1)
		respond(storeReply(codec.CodeStorageFull, 0, "the recipient's home node's disk is nearly full; retry later"))
		return
	case flags&codec.FlagGroup != 0:
		m := &offline.Message[*Conn]{Group: to, From: from, ID: id, Body: append([]byte(nil), body...), Dup: flags&codec.FlagDup != 0}
		code, detail := s.groupMessage(m, func() { rm.replies.Store(m, respond) })
		switch code {
		case 0:
			advance()
		case codec.CodeBusy:
			rm.replies.Delete(m)
			respond(storeReply(code, 0, detail))
		default: // refused for good: not a member, no such group
			advance()
			respond(storeReply(code, 0, detail))
		}
		return
	case !s.accounts.Exists(to):
		advance()
		respond(storeReply(codec.CodeUnknownRecipient, 0, fmt.Sprintf("no user %d", to)))
		return
	}
	if s.blocks.Blocks(to, from) { // as on one node: SENT, stored nowhere (block.go)
		advance()
		respond(storeReply(0, uint64(time.Now().UnixMilli()), ""))
		return
	}
	m := &offline.Message[*Conn]{To: to, From: from, ID: id, Body: append([]byte(nil), body...), Dup: flags&codec.FlagDup != 0}
	rm.replies.Store(m, respond)
	if err := s.inbox.Submit(m); err != nil {
		rm.replies.Delete(m)
		s.counters.busy.Add(1)
		respond(storeReply(codec.CodeBusy, 0, "message store saturated; not stored, retry"))
		return
	}
	advance() // queued: the lane keeps the order from here
}

func storeReply(code codec.Code, time uint64, detail string) []byte {
	b := binary.BigEndian.AppendUint16(make([]byte, 0, 10+len(detail)), uint16(code))
	b = binary.BigEndian.AppendUint64(b, time)
	return append(b, detail...)
}

// storeDone answers a remote store that became durable or failed; false
// if m was not one.
func (s *Server) storeDone(m *offline.Message[*Conn]) bool {
	if s.rm == nil {
		return false
	}
	v, ok := s.rm.replies.LoadAndDelete(m)
	if !ok {
		return false
	}
	respond := v.(func([]byte))
	switch {
	case m.Err == nil:
		respond(storeReply(0, m.Time, ""))
	case errors.Is(m.Err, offline.ErrInboxFull):
		respond(storeReply(codec.CodeInboxFull, 0, "the recipient's inbox is full; not stored"))
	case errors.Is(m.Err, offline.ErrInboxBytesFull):
		respond(storeReply(codec.CodeInboxBytesFull, 0, "the recipient's inbox is at its byte quota; not stored"))
	case errors.Is(m.Err, offline.ErrDuplicateID):
		respond(storeReply(codec.CodeDuplicateID, 0, "this id was already used for another recipient or body"))
	case errors.Is(m.Err, offline.ErrUnknownOutcome):
		respond(storeReply(codec.CodeUnknownOutcome, 0, "outcome unknown: resend with DUP"))
	default:
		respond(storeReply(codec.CodeInternal, 0, "not stored"))
	}
	return true
}

// --- sessions away from home ---------------------------------------------

// attach tells user's home that its session is on this node (c), after
// the session is in the table and before its first drain. A failure is
// logged; the reattacher tries again, also when the home is not known
// (the shard is moving): a move that completes closes the session
// (closeMoved), but one that fails leaves the shard where it was, and the
// session would get no push until its next login.
func (s *Server) attach(c *Conn, user uint64) {
	rm := s.rm
	home, err := s.homeOf(cluster.ShardOf(user))
	if err != nil {
		rm.mu.Lock()
		rm.homeless[user] = c
		rm.mu.Unlock()
		s.cl.log.Debug("attach: home not known", zap.Uint64("user", user), zap.Uint64("conn", connID(c)), zap.Error(err))
		return
	}
	rm.mu.Lock()
	if rm.homeless[user] == c {
		delete(rm.homeless, user)
	}
	if rm.here[home] == nil {
		rm.here[home] = map[uint64]*Conn{}
	}
	rm.here[home][user] = c
	if _, ok := rm.started[home]; !ok {
		rm.started[home] = s.cl.node.Started(home)
	}
	rm.mu.Unlock()
	s.sendAttach(home, user, c)
}

func (s *Server) sendAttach(home string, user uint64, c *Conn) {
	s.sessions.Behind(c) // the home numbers its pushes from scratch: drain first
	var epoch uint64
	if v, ok := s.cl.sessions.Load(user); ok && v.(*claim).c == c {
		epoch = v.(*claim).epoch
	}
	req := binary.BigEndian.AppendUint64(nil, user)
	req = binary.BigEndian.AppendUint64(req, connID(c))
	req = binary.BigEndian.AppendUint64(req, epoch)
	req = binary.BigEndian.AppendUint64(req, uint64(s.cl.node.Run().UnixMilli()))
	req = append(req, s.cl.node.Name()...)
	_, err := s.cl.node.Request(s.ctx(), home, "attach", req)
	if ce := s.cl.log.Check(zap.DebugLevel, "attach"); ce != nil {
		ce.Write(zap.Uint64("user", user), zap.String("home", home), zap.Uint64("conn", connID(c)), zap.Uint64("epoch", epoch), zap.Error(err))
	}
	if err != nil {
		s.rm.mu.Lock()
		s.rm.unattached[user] = true // the reattacher tries again
		s.rm.mu.Unlock()
	}
}

// connID names a connection between nodes (attach, detach, deliver): its
// number (Gen) above the low half of its address. The address alone is
// unique only while the connection is open: a new session at a freed
// connection's address, whose attach reached the home before the old
// one's detach, had that detach drop its live attachment. Two ids are
// equal only for connections 2^32 accepts apart at the same address.
func connID(c *Conn) uint64 {
	return uint64(c.Gen())<<32 | uint64(uint32(uintptr(unsafe.Pointer(c))))
}

// detach undoes attach when the session ends (Closed: it only queues).
func (s *Server) detach(c *Conn, user uint64) {
	rm := s.rm
	rm.outbound.Delete(c)
	rm.mu.Lock()
	if rm.homeless[user] == c {
		delete(rm.homeless, user)
	}
	var home string
	for h, users := range rm.here {
		if users[user] == c {
			delete(users, user)
			home = h
		}
	}
	rm.mu.Unlock()
	if home == "" {
		return
	}
	req := binary.BigEndian.AppendUint64(nil, user)
	req = binary.BigEndian.AppendUint64(req, connID(c))
	s.cl.node.Send(home, "detach", req, func([]byte, error) {})
}

func (s *Server) serveAttach(req []byte, respond func([]byte)) {
	if len(req) < 33 {
		respond(nil)
		return
	}
	user, sid, epoch := binary.BigEndian.Uint64(req), binary.BigEndian.Uint64(req[8:]), binary.BigEndian.Uint64(req[16:])
	run, node := time.UnixMilli(int64(binary.BigEndian.Uint64(req[24:]))), string(req[32:])
	rm := s.rm
	rm.mu.Lock()
	// A later claim wins; an attach whose claim is not written yet (epoch
	// 0: the directory was unavailable) wins by arriving later.
	a := rm.away[user]
	taken := a == nil || epoch == 0 || epoch >= a.epoch
	if d, ok := rm.earlyDetach[user]; ok && d.sid == sid {
		taken = false // that session ended already
		delete(rm.earlyDetach, user)
	}
	if ce := s.cl.log.Check(zap.DebugLevel, "attach served"); ce != nil {
		f := []zap.Field{zap.Uint64("user", user), zap.String("node", node), zap.Uint64("conn", sid), zap.Uint64("epoch", epoch), zap.Bool("taken", taken)}
		if a != nil {
			f = append(f, zap.String("was_node", a.node), zap.Uint64("was_conn", a.sid), zap.Uint64("was_epoch", a.epoch), zap.Uint64("was_last", a.last))
		}
		ce.Write(f...)
	}
	if taken {
		na := &attachment{node: node, started: run, sid: sid, epoch: epoch}
		if a != nil && a.node == node && a.sid == sid {
			// The same session again (its claim was written late): keep
			// numbering its pushes where they were, so that one lost just
			// before still shows as a gap. Restarting from 0 would hide it
			// if the session's drain finished before this attach.
			na.last, na.nudged = a.last, a.nudged
			for _, set := range []map[uint64]*attachment{rm.pushed, rm.pushedBefore} {
				if set[user] == a {
					set[user] = na // its repair follows it
				}
			}
		}
		rm.away[user] = na
	}
	rm.mu.Unlock()
	respond([]byte{1})
	s.presence.Changed(user, 0)
}

func (s *Server) serveDetach(req []byte, respond func([]byte)) {
	if len(req) >= 16 {
		user, sid := binary.BigEndian.Uint64(req), binary.BigEndian.Uint64(req[8:])
		rm := s.rm
		rm.mu.Lock()
		a := rm.away[user]
		if a != nil && a.sid == sid {
			delete(rm.away, user)
		} else {
			rm.earlyDetach[user] = earlyDetach{sid: sid, at: time.Now()}
		}
		rm.mu.Unlock()
		if ce := s.cl.log.Check(zap.DebugLevel, "detach served"); ce != nil {
			ce.Write(zap.Uint64("user", user), zap.Uint64("conn", sid), zap.Bool("removed", a != nil && a.sid == sid))
		}
		if a != nil && a.sid == sid {
			s.presence.Changed(user, uint64(time.Now().UnixMilli()))
		}
	}
	respond([]byte{1})
}

// pushAway publishes new entries of users whose session is on another
// node (hooks.Applied, on a lane: entries of one user come from one lane,
// in order). A group message whose body is not in the entry is not sent,
// but counts as pushed: the next push then names it, and the session,
// which never heard of it, drains.
func (s *Server) pushAway(entries []*offline.Stored) {
	rm := s.rm
	type batch struct {
		node      string
		sid, prev uint64
		user      uint64
		wire      []byte
		count     int
	}
	var out map[uint64]*batch
	rm.mu.Lock()
	if len(rm.away) == 0 {
		rm.mu.Unlock()
		return
	}
	for _, e := range entries {
		a := rm.away[e.To]
		if a == nil {
			continue
		}
		if out == nil {
			out = map[uint64]*batch{}
		}
		b := out[e.To]
		if b == nil {
			b = &batch{node: a.node, sid: a.sid, prev: a.last, user: e.To}
			out[e.To] = b
			rm.pushed[e.To] = a
		}
		a.last = e.Seq
		var ok bool
		if b.wire, ok = e.Entry.AppendWire(b.wire); ok {
			b.count++
		}
	}
	rm.mu.Unlock()
	for _, b := range out {
		if s.cfg.dropPush != nil && s.cfg.dropPush() {
			continue
		}
		msg := binary.BigEndian.AppendUint64(nil, b.user)
		msg = binary.BigEndian.AppendUint64(msg, b.sid)
		msg = binary.BigEndian.AppendUint64(msg, b.prev)
		s.cl.node.Publish(b.node, "deliver", append(msg, b.wire...))
	}
}

// repairPushes repairs a lost final push. A push is published without an
// answer; its loss is noticed when the next push to the session names the
// seq before it, and if none comes, the session would wait for its next
// login. So once a session's pushes have been quiet for a tick, the home
// sends it an empty push naming the last seq pushed: a session that never
// got it drains from here (router.AppliedFrom), one that did ignores it.
// Only the sessions pushed to in the tick before are looked at, so a tick
// costs nothing for the many that got no push.
func (s *Server) repairPushes() {
	type nudge struct {
		node            string
		user, sid, last uint64
	}
	var out []nudge
	rm := s.rm
	rm.mu.Lock()
	for u, a := range rm.pushedBefore {
		if _, still := rm.pushed[u]; still || rm.away[u] != a || a.last == a.nudged {
			continue // still pushing (the next push names the last), gone, or nudged already
		}
		a.nudged = a.last
		out = append(out, nudge{a.node, u, a.sid, a.last})
	}
	clear(rm.pushedBefore)
	rm.pushed, rm.pushedBefore = rm.pushedBefore, rm.pushed
	rm.mu.Unlock()
	for _, n := range out {
		msg := binary.BigEndian.AppendUint64(nil, n.user)
		msg = binary.BigEndian.AppendUint64(msg, n.sid)
		msg = binary.BigEndian.AppendUint64(msg, n.last)
		s.cl.node.Publish(n.node, "deliver", msg)
	}
	if len(out) > 0 {
		s.counters.pushRepairs.Add(uint64(len(out)))
	}
}

// serveDeliver takes a home's push for a session here.
func (s *Server) serveDeliver(msg []byte, respond func([]byte)) {
	if len(msg) < 24 {
		return
	}
	user, sid, prev := binary.BigEndian.Uint64(msg), binary.BigEndian.Uint64(msg[8:]), binary.BigEndian.Uint64(msg[16:])
	c, ok := s.sessions.Lookup(user)
	if !ok {
		return // the session ended: its detach is on the way
	}
	var stored []*offline.Stored
	for rest := msg[24:]; len(rest) > 0; {
		st := &offline.Stored{To: user}
		var err error
		if rest, err = offline.DecodeWire(rest, &st.Entry); err != nil {
			s.cl.log.Warn("bad push from a home node", zap.Error(err))
			break
		}
		stored = append(stored, st)
	}
	if connID(c) != sid {
		s.cl.log.Debug("push for another session", zap.Uint64("user", user), zap.Uint64("conn", connID(c)), zap.Uint64("push_conn", sid), zap.Uint64("prev", prev))
		// A push for an older session of this user: the home had not yet
		// taken the current one's attach (or lost it). Its entries are the
		// user's all the same, but this session cannot tell whether an
		// earlier push of that stream was lost: pushing them now could put
		// them ahead of an entry it never got, which its drain (reading on
		// from the last pushed seq) would then skip until the next login,
		// delivering it late and out of order (seen in a stressed kill -9
		// run). So push nothing: mark the session behind, attach again
		// and drain, which reads the home's inbox in order from where this
		// session is.
		s.sessions.Behind(c)
		go func() {
			if home, err := s.homeOf(cluster.ShardOf(user)); err == nil {
				s.sendAttach(home, user, c)
				s.drain(c)
			}
		}()
		return
	}
	b := s.batch()
	drain := s.sessions.AppliedFrom(user, prev, stored, b)
	s.flush(b)
	if drain {
		s.drain(c)
	}
}

// readHome reads user's backlog from its home for the router's drain.
func (s *Server) readHome(user, after uint64, max int, fn func(*offline.Entry) bool) (err error) {
	defer func() {
		if err != nil { // the reattacher drains it again
			s.rm.mu.Lock()
			s.rm.undrained[user] = true
			s.rm.mu.Unlock()
		}
	}()
	home, err := s.homeOf(cluster.ShardOf(user))
	if err != nil {
		return err
	}
	req := binary.BigEndian.AppendUint64(nil, user)
	req = binary.BigEndian.AppendUint64(req, after)
	req = binary.BigEndian.AppendUint32(req, uint32(max))
	reply, err := s.cl.node.Request(s.ctx(), home, "read", req)
	if err != nil {
		return err
	}
	if len(reply) < 1 || reply[0] != 0 {
		return fmt.Errorf("server: read at %s failed: %s", home, reply)
	}
	var e offline.Entry
	for rest := reply[1:]; len(rest) > 0; {
		if rest, err = offline.DecodeWire(rest, &e); err != nil {
			return err
		}
		if !fn(&e) {
			break
		}
	}
	return nil
}

func (s *Server) serveRead(req []byte, respond func([]byte)) {
	if len(req) < 20 {
		respond([]byte("short read request"))
		return
	}
	user, after, max := binary.BigEndian.Uint64(req), binary.BigEndian.Uint64(req[8:]), int(binary.BigEndian.Uint32(req[16:]))
	if !s.local(user) {
		respond([]byte("not home"))
		return
	}
	out := []byte{0}
	err := s.inbox.Read(user, after, min(max, 4096), func(e *offline.Entry) bool {
		out, _ = e.AppendWire(out)
		return len(out) < 4<<20
	})
	if err != nil {
		respond([]byte(err.Error()))
		return
	}
	respond(out)
}

// ackHome sends an ACK of (from, to] to user's home; a lost one leaves
// the entries there, to be delivered again at the next login.
func (s *Server) ackHome(user, from, to uint64) error {
	home, err := s.homeOf(cluster.ShardOf(user))
	if err != nil {
		return err
	}
	req := binary.BigEndian.AppendUint64([]byte{opAck}, user)
	req = binary.BigEndian.AppendUint64(req, from)
	req = binary.BigEndian.AppendUint64(req, to)
	return s.cl.node.Send(home, "inbox", req, func(_ []byte, err error) {
		if err != nil {
			s.cl.log.Debug("ack not answered", zap.Uint64("user", user), zap.Error(err))
		}
	})
}

// A session's ACKs and READs go to its home on one subject, "inbox", so
// that the home takes them in the order the session sent them (a READ
// must find the ACK before it done): NATS delivers one subscription's
// messages in order, two subscriptions' in any.
const (
	opAck  = 'a'
	opMark = 'm'
)

func (s *Server) serveInbox(req []byte, respond func([]byte)) {
	if len(req) == 0 {
		respond([]byte{1})
		return
	}
	switch req[0] {
	case opAck:
		s.serveAck(req[1:], respond)
	case opMark:
		s.serveMark(req[1:], respond)
	default:
		respond([]byte{1})
	}
}

func (s *Server) serveAck(req []byte, respond func([]byte)) {
	if len(req) >= 24 {
		user := binary.BigEndian.Uint64(req)
		if s.local(user) {
			s.inbox.Ack(user, binary.BigEndian.Uint64(req[8:]), binary.BigEndian.Uint64(req[16:]))
		}
	}
	respond([]byte{1})
}

// reattacher attaches again the sessions whose home restarted (it keeps
// attachments in memory), and drains them: what was stored meanwhile was
// pushed to nobody. Once a second, it also drains again the sessions
// whose last read from their home failed.
func (s *Server) reattacher() {
	defer s.cl.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	wasLive := map[string]bool{}
	watchStarted := map[string]time.Time{}
	ticks := 0
	lastMap, _ := s.cl.node.Shards()
	for {
		select {
		case <-s.closing:
			return
		case <-t.C:
		}
		if m, ok := s.cl.node.Shards(); ok {
			s.closeMoved(lastMap, m)
			lastMap = m
		}
		s.awayPresence(wasLive)
		s.sweepEarlyDetaches()
		s.rewatch(watchStarted)
		if ticks++; ticks%5 == 0 {
			s.watchUnheard()
		}
		s.repairPushes()
		rm := s.rm
		type again struct {
			home  string
			users map[uint64]*Conn
		}
		var todo []again
		var retry []*Conn
		var reattach []again
		var homeless []*Conn
		rm.mu.Lock()
		for u, c := range rm.homeless {
			delete(rm.homeless, u)
			homeless = append(homeless, c)
		}
		for u := range rm.undrained {
			delete(rm.undrained, u)
			for _, users := range rm.here {
				if c := users[u]; c != nil {
					retry = append(retry, c)
				}
			}
		}
		for u := range rm.unattached {
			delete(rm.unattached, u)
			for home, users := range rm.here {
				if c := users[u]; c != nil {
					reattach = append(reattach, again{home, map[uint64]*Conn{u: c}})
				}
			}
		}
		for home, users := range rm.here {
			now := s.cl.node.Started(home)
			if now.IsZero() || now.Equal(rm.started[home]) || len(users) == 0 {
				continue
			}
			rm.started[home] = now
			cp := make(map[uint64]*Conn, len(users))
			for u, c := range users {
				cp[u] = c
			}
			todo = append(todo, again{home, cp})
		}
		rm.mu.Unlock()
		if len(retry)+len(todo)+len(reattach)+len(homeless) > 0 {
			s.cl.log.Debug("reattacher", zap.Int("drain_again", len(retry)), zap.Int("homes_restarted", len(todo)),
				zap.Int("attach_again", len(reattach)), zap.Int("homeless", len(homeless)))
		}
		for _, c := range homeless {
			if u := c.State.user.Load(); !c.State.gone.Load() && !s.local(u) {
				s.attach(c, u) // again homeless if the shard still moves
				s.drain(c)
			}
		}
		for _, c := range retry {
			s.drain(c)
		}
		todo = append(todo, reattach...)
		for _, a := range todo {
			for u, c := range a.users {
				s.sendAttach(a.home, u, c)
				s.drain(c)
			}
		}
	}
}

// --- receipts and READ ---------------------------------------------------

func (s *Server) ctx() context.Context { return s.baseCtx }

// forward is offline's Forward: it queues r for its home.
func (s *Server) forward(r offline.Receipt, done func()) {
	select {
	case <-s.closing: // the entries stay and are delivered again after the restart
	case s.rm.receipts <- fwdReceipt{r, done}:
	default:
		s.counters.busy.Add(1)
		s.cl.log.Warn("receipt queue full: the acknowledged entries stay until a restart", zap.Uint64("to", r.To))
	}
}

// forwarder sends queued receipts to their homes: each is an
// asynchronous request (one node's to one home go in order), sent again
// with backoff until the home has stored it.
func (s *Server) forwarder() {
	defer s.cl.wg.Done()
	for {
		select {
		case <-s.closing:
			return
		case f := <-s.rm.receipts:
			r := f.r
			req := binary.BigEndian.AppendUint64(make([]byte, 0, 33+len(r.IDs)), r.To)
			req = append(req, byte(r.Kind))
			req = binary.BigEndian.AppendUint64(req, r.By)
			req = binary.BigEndian.AppendUint64(req, r.Group)
			req = binary.BigEndian.AppendUint64(req, r.Time)
			req = append(req, r.IDs...)
			s.forwardOne(req, f.done, 100*time.Millisecond)
		}
	}
}

// forwardOne sends one receipt (req) to its home; done runs once stored.
func (s *Server) forwardOne(req []byte, done func(), wait time.Duration) {
	again := func() {
		select {
		case <-s.closing:
			return // the entries stay and are delivered again after the restart
		default:
		}
		time.AfterFunc(wait, func() { s.forwardOne(req, done, min(2*wait, 5*time.Second)) })
	}
	home, err := s.homeOf(cluster.ShardOf(binary.BigEndian.Uint64(req)))
	if err != nil {
		again()
		return
	}
	err = s.cl.node.Send(home, "receipt", req, func(reply []byte, err error) {
		if err == nil && len(reply) == 1 && reply[0] == 0 {
			done()
			return
		}
		again()
	})
	if err != nil {
		again()
	}
}

func (s *Server) serveReceipt(req []byte, respond func([]byte)) {
	if len(req) < 33 || !s.local(binary.BigEndian.Uint64(req)) {
		respond([]byte{1})
		return
	}
	r := offline.Receipt{To: binary.BigEndian.Uint64(req), Kind: codec.ReceiptKind(req[8]), By: binary.BigEndian.Uint64(req[9:]),
		Group: binary.BigEndian.Uint64(req[17:]), Time: binary.BigEndian.Uint64(req[25:]), IDs: codec.IDList(append([]byte(nil), req[33:]...))}
	err := s.inbox.SubmitReceiptThen(r, func(err error) {
		if err != nil {
			respond([]byte{1})
			return
		}
		respond([]byte{0})
	})
	if err != nil {
		respond([]byte{1})
	}
}

// markHome checks a READ at the reader's home; done gets what MarkRead's
// done would.
func (s *Server) markHome(reader, sender, group uint64, ids codec.IDList, done func(missing codec.IDList, err error)) error {
	home, err := s.homeOf(cluster.ShardOf(reader))
	if err != nil {
		return err
	}
	req := binary.BigEndian.AppendUint64([]byte{opMark}, reader)
	req = binary.BigEndian.AppendUint64(req, sender)
	req = binary.BigEndian.AppendUint64(req, group)
	req = append(req, ids...)
	return s.cl.node.Send(home, "inbox", req, func(reply []byte, err error) {
		switch {
		case err != nil:
			done(nil, err)
		case len(reply) < 1 || reply[0] != 0:
			done(nil, fmt.Errorf("server: READ at %s failed", home))
		default:
			done(codec.IDList(reply[1:]), nil)
		}
	})
}

func (s *Server) serveMark(req []byte, respond func([]byte)) {
	if len(req) < 24 || !s.local(binary.BigEndian.Uint64(req)) {
		respond([]byte{1})
		return
	}
	reader, sender, group := binary.BigEndian.Uint64(req), binary.BigEndian.Uint64(req[8:]), binary.BigEndian.Uint64(req[16:])
	ids := codec.IDList(append([]byte(nil), req[24:]...))
	err := s.inbox.MarkRead(reader, sender, group, ids, func(missing codec.IDList, err error) {
		if err != nil {
			respond([]byte{1})
			return
		}
		respond(append([]byte{0}, missing...))
	})
	if err != nil {
		respond([]byte{1})
	}
}

// inboxes is the router's inbox in a cluster: this node's for users
// homed here, the home's (by request) for the others.
type inboxes struct{ s *Server }

func (x inboxes) Read(user, after uint64, max int, fn func(*offline.Entry) bool) error {
	if x.s.local(user) {
		return x.s.inbox.Read(user, after, max, fn)
	}
	return x.s.readHome(user, after, max, fn)
}

func (x inboxes) AckEntries(user uint64, acked []offline.Acked, push func(*offline.Stored) bool) error {
	if x.s.local(user) {
		return x.s.inbox.AckEntries(user, acked, push)
	}
	if len(acked) == 0 {
		return nil
	}
	return x.s.ackHome(user, acked[0].Seq-1, acked[len(acked)-1].Seq)
}

func (x inboxes) Expiring(user, time uint64) bool {
	return x.s.local(user) && x.s.inbox.Expiring(user, time)
}

func (x inboxes) Cutoff() uint64 { return x.s.inbox.Cutoff() }

// --- typing ----------------------------------------------------------------

// typingAway sends a TYPING for a user whose session is not on this
// node: to its session's node if this is its home (which knows where the
// session is), else to its home. At most two hops, each a publish
// (typing is ephemeral; a lost one costs nothing).
func (s *Server) typingAway(from, to uint64, state codec.TypingState) {
	if s.local(to) {
		s.rm.mu.Lock()
		a := s.rm.away[to]
		var node string
		if a != nil {
			node = a.node
		}
		s.rm.mu.Unlock()
		if node != "" && node != s.cl.node.Name() {
			s.cl.node.Publish(node, "typing", typingMsg(from, to, state, true))
		}
		return
	}
	if home, err := s.homeOf(cluster.ShardOf(to)); err == nil {
		s.cl.node.Publish(home, "typing", typingMsg(from, to, state, false))
	}
}

func typingMsg(from, to uint64, state codec.TypingState, last bool) []byte {
	b := binary.BigEndian.AppendUint64(nil, from)
	b = binary.BigEndian.AppendUint64(b, to)
	return append(b, byte(state), map[bool]byte{false: 0, true: 1}[last])
}

func (s *Server) serveTyping(msg []byte, respond func([]byte)) {
	if len(msg) != 18 {
		return
	}
	from, to, state, last := binary.BigEndian.Uint64(msg), binary.BigEndian.Uint64(msg[8:]), codec.TypingState(msg[16]), msg[17] == 1
	if !last && s.blocks.Blocks(to, from) {
		return // checked at the recipient's home, where its lists are
	}
	if s.typingTo(from, to, state) || last || !s.local(to) || !s.accounts.Exists(to) {
		return
	}
	s.typingAway(from, to, state)
}
