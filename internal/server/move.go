package server

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/account"
	"github.com/chatd/chatd/internal/cluster"
	"github.com/chatd/chatd/internal/store"
	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/zap"
)

// Moving a home shard (`chatd cluster move-shard`, at the shard's owner):
//
//  1. freeze: this node stops being the shard's home (homeOf fails for
//     it, ERROR 63 to clients, "not home" to other nodes: every caller
//     retries), and waits until its inbox lanes and commit lanes have
//     finished what they took before;
//  2. copy: the destination drops any earlier copy; the shard's records (store.ShardRecords: accounts, tokens,
//     inboxes with group messages made whole, dedup window, read log,
//     last seen, groups, prekeys, push subscriptions and due pushes) go
//     to the new owner in "import" requests, which it writes with Sync
//     and takes into its lanes' state;
//  3. flip: the shard map names the new owner (a compare-and-set);
//  4. catch up and clean: whatever a straggler wrote meanwhile is copied
//     too, then the moved records are deleted here.
//
// Every node closes its sessions whose user's home moved, with GOAWAY
// reason 4 (moved): the client reconnects and its session attaches to the
// new home. Nothing acknowledged is lost: a message stored here before
// the freeze is copied; one sent during it is refused and resent.
//
// A move that fails before the flip leaves the shard here. Its partial
// copy at the destination is cleared there ("unimport") before any later
// move there copies again: records delivered here since must not come
// back. Imports and unimports are idempotent, so one without an answer
// is sent again. After the flip the new owner has everything.

// MoveReport is what a shard move did.
type MoveReport struct {
	Shard    int           `json:"shard"`
	From     string        `json:"from"`
	To       string        `json:"to"`
	Records  int           `json:"records"`
	Bytes    int           `json:"bytes"`
	Frozen   time.Duration `json:"frozen_ns"` // how long the shard took no writes
	Revision uint64        `json:"shard_map_revision"`
}

// importBatch bounds one import request's bytes: half of NATS's default
// max_payload (1 MiB), which refuses a bigger message outright. A batch
// is sent before the record that would take it past this.
const importBatch = 512 << 10

// importTries bounds the sends of one import batch that get no answer (a
// loaded new owner); the move fails, and the shard stays, after that.
const importTries = 3

// MoveShard moves shard, homed here, to node to.
func (s *Server) MoveShard(ctx context.Context, shard int, to string) (MoveReport, error) {
	rep := MoveReport{Shard: shard, To: to}
	if s.cl == nil {
		return rep, errors.New("server: not a cluster node")
	}
	me := s.cl.node.Name()
	rep.From = me
	if shard < 0 || shard >= cluster.Shards {
		return rep, fmt.Errorf("server: no shard %d", shard)
	}
	m, err := s.cl.node.ReadShards(ctx)
	switch {
	case err != nil:
		return rep, fmt.Errorf("server: read the shard map: %w", err)
	case m.OwnerOf(shard) != me:
		return rep, fmt.Errorf("server: shard %d is homed at %s, not here: run the move at that node", shard, m.OwnerOf(shard))
	case to == me:
		return rep, fmt.Errorf("server: shard %d is homed here already", shard)
	case !s.cl.node.Alive(to):
		return rep, fmt.Errorf("server: node %s is not live", to)
	}
	if !s.cl.moving.CompareAndSwap(false, true) {
		return rep, errors.New("server: another shard move is running on this node")
	}
	defer s.cl.moving.Store(false)

	start := time.Now()
	s.cl.frozen[shard].Store(true)
	defer s.cl.frozen[shard].Store(false)
	s.cl.log.Info("shard move: frozen", zap.Int("shard", shard), zap.String("to", to))
	if err := s.settle(); err != nil {
		return rep, err
	}
	in := func(id uint64) bool { return cluster.ShardOf(id) == shard }
	sent := map[string]bool{}
	if _, err := s.requestImport(ctx, to, "unimport", binary.BigEndian.AppendUint16(nil, uint16(shard))); err != nil {
		return rep, fmt.Errorf("server: shard %d not moved: %s did not clear an earlier copy: %w", shard, to, err)
	}
	if err := s.copyShard(ctx, shard, to, in, sent, &rep); err != nil {
		return rep, fmt.Errorf("server: shard %d not moved: %w", shard, err)
	}
	// The map's revision moves with every other shard's move: read it
	// again until the compare-and-set holds (only this node moves this
	// shard, so its owner stays this node meanwhile).
	var m2 *cluster.ShardMap
	for try := 0; ; try++ {
		m2, err = s.cl.node.Move(ctx, m, shard, to)
		if err == nil {
			break
		}
		if try == 4 {
			return rep, fmt.Errorf("server: shard %d copied to %s but the map was not changed (it stays here): %w", shard, to, err)
		}
		if m, err = s.cl.node.ReadShards(ctx); err != nil {
			return rep, fmt.Errorf("server: shard %d copied to %s but the map was not read again (it stays here): %w", shard, to, err)
		}
	}
	rep.Revision = m2.Rev
	rep.Frozen = time.Since(start)
	// A straggler (an op that found this node home just before the
	// freeze) may have written since the copy: copy it too.
	if err := s.settle(); err == nil {
		if err := s.copyShard(ctx, shard, to, in, sent, &rep); err != nil {
			s.cl.log.Error("shard move: catch-up copy failed", zap.Int("shard", shard), zap.Error(err))
		}
	}
	s.dropShard(shard, in, sent)
	s.cl.log.Info("shard move: done", zap.Int("shard", shard), zap.String("to", to),
		zap.Int("records", rep.Records), zap.Duration("frozen", rep.Frozen))
	return rep, nil
}

// settle waits until the inbox lanes and the commit lanes have finished
// every op queued so far.
func (s *Server) settle() error {
	s.commits.barrier()
	return s.inbox.Barrier()
}

// copyShard sends the shard's records not in sent to node to.
func (s *Server) copyShard(ctx context.Context, shard int, to string, in func(uint64) bool, sent map[string]bool, rep *MoveReport) error {
	var req []byte
	flush := func() error {
		if len(req) <= 2 {
			return nil
		}
		if _, err := s.requestImport(ctx, to, "import", req); err != nil {
			return err
		}
		req = req[:2]
		return nil
	}
	req = binary.BigEndian.AppendUint16(req, uint16(shard))
	add := func(k, v []byte) error {
		if sent[string(k)] {
			return nil
		}
		if k[0] == store.PrefixInbox {
			mv, ok, err := s.inbox.Materialize(k, v)
			if err != nil || !ok {
				return err // a group message whose body expired is not moved
			}
			v = mv
		}
		if len(req)+8+len(k)+len(v) > importBatch {
			if err := flush(); err != nil {
				return err
			}
		}
		sent[string(k)] = true
		rep.Records++
		rep.Bytes += len(k) + len(v)
		req = binary.BigEndian.AppendUint32(req, uint32(len(k)))
		req = append(req, k...)
		req = binary.BigEndian.AppendUint32(req, uint32(len(v)))
		req = append(req, v...)
		return nil
	}
	counter := account.ShardCounterKey(shard)
	if v, closer, err := s.db.Get(counter); err == nil {
		v = append([]byte(nil), v...)
		closer.Close()
		delete(sent, string(counter)) // it changes: always send the latest
		if err := add(counter, v); err != nil {
			return err
		}
	}
	if err := store.ShardRecords(s.db, in, add); err != nil {
		return err
	}
	return flush()
}

// requestImport sends an import (or unimport) to the new owner. One
// that timed out may have been done: it is sent again, and both are
// idempotent (the new owner takes a record it already has once).
func (s *Server) requestImport(ctx context.Context, to, op string, req []byte) ([]byte, error) {
	var reply []byte
	var err error
	for try := 0; ; try++ {
		reply, err = s.cl.node.Request(ctx, to, op, req)
		if err == nil || !errors.Is(err, cluster.ErrNoAnswer) || try == importTries-1 || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	if len(reply) != 1 || reply[0] != 0 {
		return nil, fmt.Errorf("%s refused the %s: %s", to, op, reply)
	}
	return reply, nil
}

// serveUnimport deletes, at the move's new owner before the copy, the
// shard's records a failed earlier move left here: the shard stayed at
// its owner, which may have deleted (delivered) some of them since, and
// they must not come back to life when this copy lands. This node must
// not be the shard's home: then they are not a copy.
func (s *Server) serveUnimport(req []byte, respond func([]byte)) {
	arrived := time.Now()
	go func() {
		if err := s.unimport(req, arrived); err != nil {
			s.cl.log.Error("shard unimport failed", zap.Error(err))
			respond([]byte(err.Error()))
			return
		}
		respond([]byte{0})
	}()
}

func (s *Server) unimport(req []byte, arrived time.Time) error {
	if len(req) != 2 {
		return errors.New("malformed unimport")
	}
	shard := int(binary.BigEndian.Uint16(req))
	s.cl.importMu.Lock()
	defer s.cl.importMu.Unlock()
	if err := s.staleImport(arrived); err != nil {
		return err
	}
	if h, err := s.homeOf(shard); err != nil || h == s.cl.node.Name() {
		return fmt.Errorf("shard %d is homed here (or the map is not known): not clearing it", shard)
	}
	if may, err := store.MayHoldImport(s.db, shard); err != nil || !may {
		return err // nothing imported since the last clear: no scan of every table
	}
	in := func(id uint64) bool { return cluster.ShardOf(id) == shard }
	var keys [][]byte
	var sizes []int // the values' lengths: the inbox byte quota counts them out
	if err := store.ShardRecords(s.db, in, func(k, v []byte) error {
		keys = append(keys, append([]byte(nil), k...))
		sizes = append(sizes, len(v))
		return nil
	}); err != nil {
		return err
	}
	b := s.db.NewBatch()
	defer b.Close()
	for _, k := range keys {
		b.Delete(k, nil)
	}
	b.Delete(store.ImportMarker(shard), nil)
	if err := b.Commit(pebble.Sync); err != nil {
		return err
	}
	s.groups.Forget(in)
	s.blocks.Forget(in)
	s.forgetPush(in)
	s.cl.log.Info("shard move: cleared an earlier copy", zap.Int("shard", shard), zap.Int("records", len(keys)))
	return s.inbox.Disown(keys, sizes)
}

// serveImport writes a moving shard's records here (the new owner) and
// takes them into the stores' state.
func (s *Server) serveImport(req []byte, respond func([]byte)) {
	arrived := time.Now()
	go func() { // a Sync write: off the NATS goroutine
		if err := s.importRecords(req, arrived); err != nil {
			s.cl.log.Error("shard import failed", zap.Error(err))
			respond([]byte(err.Error()))
			return
		}
		respond([]byte{0})
	}()
}

// staleImport refuses an import or unimport that waited for importMu
// longer than its sender waits for an answer. Under load they queue here
// (each unimport scans every table), and one nobody waits for any more
// would only delay the request sent again behind it, and an import run
// after the move it belonged to gave up could bring back records since
// cleared. Both are sent again if they are still to be done.
func (s *Server) staleImport(arrived time.Time) error {
	if waited := time.Since(arrived); waited > s.cl.node.OpTimeout() {
		s.counters.staleImports.Add(1)
		return fmt.Errorf("dropped: waited %s, past the sender's timeout", waited.Round(time.Millisecond))
	}
	return nil
}

func (s *Server) importRecords(req []byte, arrived time.Time) error {
	if len(req) < 2 {
		return errors.New("short import")
	}
	shard := int(binary.BigEndian.Uint16(req)) // imports come before the flip and, to catch up, after it
	// One at a time: a batch sent again after a timeout may meet its
	// first send still writing, and each must see what the other wrote.
	s.cl.importMu.Lock()
	defer s.cl.importMu.Unlock()
	if err := s.staleImport(arrived); err != nil {
		return err
	}
	b := s.db.NewBatch()
	defer b.Close()
	b.Set(store.ImportMarker(shard), nil, nil)
	var keys, values [][]byte
	counter := false
	for rest := req[2:]; len(rest) > 0; {
		if len(rest) < 4 || len(rest) < 4+int(binary.BigEndian.Uint32(rest)) {
			return errors.New("corrupt import")
		}
		n := int(binary.BigEndian.Uint32(rest))
		k := rest[4 : 4+n]
		rest = rest[4+n:]
		if len(rest) < 4 || len(rest) < 4+int(binary.BigEndian.Uint32(rest)) {
			return errors.New("corrupt import")
		}
		n = int(binary.BigEndian.Uint32(rest))
		v := rest[4 : 4+n]
		rest = rest[4+n:]
		b.Set(k, v, nil)
		if k[0] == store.PrefixInbox && s.has(k) {
			continue // sent again after a timeout: counted once already
		}
		keys, values = append(keys, k), append(values, v)
		counter = counter || string(k) == string(account.ShardCounterKey(shard))
		if k[0] == store.PrefixGroup && len(k) >= 9 {
			s.groups.Adopt(binary.BigEndian.Uint64(k[1:]))
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return err
	}
	if err := s.adoptLists(keys); err != nil {
		return err
	}
	if counter {
		if err := s.accounts.AdoptShard(shard); err != nil {
			return err
		}
	}
	if err := s.inbox.Adopt(keys, values); err != nil {
		return err
	}
	s.adoptPush(keys) // after the inbox: a due push is sent only for entries waiting
	return nil
}

// has reports whether k is stored here (false if it cannot be read).
func (s *Server) has(k []byte) bool {
	ok, _ := store.Has(s.db, k)
	return ok
}

// dropShard deletes the moved records here and forgets what memory held
// of the shard.
func (s *Server) dropShard(shard int, in func(uint64) bool, sent map[string]bool) {
	b := s.db.NewBatch()
	for k := range sent {
		b.Delete([]byte(k), nil)
	}
	b.Delete(store.ImportMarker(shard), nil) // if it came here by a move
	if err := b.Commit(pebble.NoSync); err != nil {
		s.cl.log.Error("shard move: moved records not deleted here", zap.Int("shard", shard), zap.Error(err))
	}
	b.Close()
	s.groups.Forget(in)
	s.blocks.Forget(in)
	s.forgetPush(in)
	s.rm.mu.Lock()
	for u := range s.rm.away {
		if in(u) {
			delete(s.rm.away, u)
		}
	}
	s.rm.mu.Unlock()
}

// closeMoved closes, with GOAWAY moved, the sessions here whose user's
// home changed between two shard maps: they reconnect and attach to the
// new home.
func (s *Server) closeMoved(old, now *cluster.ShardMap) {
	if old == nil || now == nil || old.Rev == now.Rev {
		return
	}
	var moved []bool
	for i := range cluster.Shards {
		if old.OwnerOf(i) != now.OwnerOf(i) {
			if moved == nil {
				moved = make([]bool, cluster.Shards)
			}
			moved[i] = true
		}
	}
	if moved == nil {
		return
	}
	bye := (&codec.Goaway{Reason: codec.GoawayMoved}).Append(nil)
	s.conns.Each(func(c *Conn) {
		if u := c.State.user.Load(); u != 0 && moved[cluster.ShardOf(u)] {
			if c.Write(bye) {
				c.Flush()
			}
			c.Close()
		}
	})
}
