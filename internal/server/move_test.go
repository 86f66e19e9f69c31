package server

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/cluster"
	"github.com/chatd/chatd/internal/store"
	"github.com/cockroachdb/pebble/v2"
)

// Shards move under load: ten senders each send to their recipient on
// random nodes while the home shard of every sender and every recipient
// moves to another node, one after the other. Every SENT message is
// delivered, none twice after the client's dedup, each sender's in order,
// and every delivered receipt reaches its sender at its new home.
func TestClusterShardMoveUnderLoad(t *testing.T) {
	t.Parallel() // most of its time is waiting on other processes; -parallel bounds how many run at once
	nodes := startClusterNodes(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tr := startTraffic(t, ctx, 10, "m", 10*time.Millisecond, func(i int) (*clusterNode, *clusterNode) {
		return nodes[i%3], nodes[(i+1)%3]
	})
	// Move every user's shard to the next node, under load. A shard moved
	// before (sender and recipient may share one) is found by asking each
	// node until its owner does it.
	for _, p := range tr.pairs {
		for _, u := range []uint64{p.sender.User(), p.recipient.User()} {
			time.Sleep(50 * time.Millisecond) // load between moves
			shard, from := cluster.ShardOf(u), homeNode(nodes, u)
			// A node may refuse for now (the new owner reads as not live
			// for a moment, an import got no answer: the shard stays where
			// it was): ask again for a while.
			var why []string
			for try := time.Now(); ; {
				why = nil
				for _, i := range []int{from, (from + 1) % 3, (from + 2) % 3} {
					resp, err := (&http.Client{Timeout: time.Minute}).PostForm("http://"+nodes[i].admin+"/cluster/move",
						url.Values{"shard": {strconv.Itoa(shard)}, "to": {nodes[(i+1)%3].name}})
					if err != nil {
						t.Fatal(err)
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						t.Logf("moved shard %d: %s", shard, body)
						why = nil
						break
					}
					why = append(why, nodes[i].name+": "+string(body))
				}
				if why == nil || time.Since(try) > time.Minute {
					break
				}
				t.Logf("shard %d not moved yet: %q", shard, why)
				time.Sleep(500 * time.Millisecond)
			}
			if why != nil {
				t.Fatalf("shard %d: no node would move it: %q", shard, why)
			}
		}
	}
	time.Sleep(300 * time.Millisecond) // load after the last move
	tr.check(2*time.Minute, true)
}

// startOneNodeCluster starts a server in this process as the only node
// of a cluster: it is home to every shard.
func startOneNodeCluster(t *testing.T) *Server {
	t.Helper()
	cfg := testConfig(t)
	listen := freeOn(t, "127.0.0.1")
	cfg.Cluster = &cluster.Config{Node: "n1", Listen: listen, Routes: []string{listen}, Secret: "cluster-test-secret",
		Heartbeat: 250 * time.Millisecond, ReadyTimeout: time.Minute}
	return startServer(t, cfg)
}

// An import batch the new owner gets twice (its first send timed out on
// the old owner's side but was written) counts each inbox entry once:
// the inbox depths behind quotas stay exact.
func TestImportSentTwiceCountsOnce(t *testing.T) {
	s := startOneNodeCluster(t)
	var a, b *client.Conn
	deadline := time.Now().Add(30 * time.Second)
	for a == nil { // the shard map is made once the node is live: ERROR 63 until then
		c := dial(t, s)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := c.Register(ctx, "alice", "password-alice")
		cancel()
		var e *codec.Error
		switch {
		case err == nil:
			a = c
		case errors.As(err, &e) && e.Code == codec.CodeUnavailable && time.Now().Before(deadline):
			c.Close()
			time.Sleep(50 * time.Millisecond)
		default:
			t.Fatal(err)
		}
	}
	b = register(t, s, "bob")
	bob := b.Welcome.User
	b.Close()
	if _, err := a.Send(bob, []byte("hello"), true); err != nil {
		t.Fatal(err)
	}
	var key, val []byte
	prefix := binary.BigEndian.AppendUint64([]byte{store.PrefixInbox}, bob)
	for key == nil { // the entry is written once SENT arrives
		if time.Now().After(deadline) {
			t.Fatal("bob's entry was not stored")
		}
		it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: store.PrefixEnd(prefix)})
		if err != nil {
			t.Fatal(err)
		}
		if it.First() {
			key, val = append([]byte(nil), it.Key()...), append([]byte(nil), it.Value()...)
		}
		it.Close()
		time.Sleep(10 * time.Millisecond)
	}
	// The same entry again under a later seq, as a moved shard brings it.
	moved := binary.BigEndian.AppendUint64(append([]byte(nil), key[:9]...), binary.BigEndian.Uint64(key[9:])+1000)
	batch := binary.BigEndian.AppendUint16(nil, uint16(cluster.ShardOf(bob)))
	batch = binary.BigEndian.AppendUint32(batch, uint32(len(moved)))
	batch = append(batch, moved...)
	batch = binary.BigEndian.AppendUint32(batch, uint32(len(val)))
	batch = append(batch, val...)
	before := s.inbox.Entries()
	for range 2 {
		if err := s.importRecords(batch, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.inbox.Entries() - before; got != 1 {
		t.Fatalf("an entry imported twice counted %d times", got)
	}
	// One that waited past its sender's timeout is dropped, not written:
	// its sender sends it again if it is still to be done.
	late := binary.BigEndian.AppendUint64(append([]byte(nil), key[:9]...), binary.BigEndian.Uint64(key[9:])+2000)
	lateBatch := binary.BigEndian.AppendUint32(append([]byte(nil), batch[:2]...), uint32(len(late)))
	lateBatch = append(lateBatch, late...)
	lateBatch = binary.BigEndian.AppendUint32(lateBatch, uint32(len(val)))
	lateBatch = append(lateBatch, val...)
	if err := s.importRecords(lateBatch, time.Now().Add(-2*s.cl.node.OpTimeout())); err == nil {
		t.Fatal("an import past its sender's timeout was taken")
	}
	if s.has(late) || s.counters.staleImports.Load() != 1 {
		t.Fatalf("a stale import: stored %v, counted %d", s.has(late), s.counters.staleImports.Load())
	}
	// Clearing an earlier copy is refused at the shard's home: there the
	// records are the shard itself.
	if err := s.unimport(batch[:2], time.Now()); err == nil {
		t.Fatal("the shard's home cleared its own records")
	}
	if _, closer, err := s.db.Get(key); err != nil {
		t.Fatalf("bob's entry after a refused clear: %v", err)
	} else {
		closer.Close()
	}
}
