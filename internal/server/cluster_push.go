package server

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/cluster"
	"github.com/chatd/chatd/internal/store"
	"go.uber.org/zap"
)

// Push subscriptions across nodes. A user's subscriptions and its due
// push live at its home, with the inbox, which alone sees entries stored
// for the user; they move with its shard (move.go copies them, and
// adoptPush takes them into the new home's memory). One subject, "push",
// whose first byte says what:
//
//   - frame: PUSH_SUBSCRIBE, PUSH_LIST or PUSH_REMOVE from a session on
//     another node, run at the user's home on its commit lane; the home
//     answers with the frame for the client, or says it is no longer the
//     home and the sender tries the new one (as for the prekey
//     directory: homeSend).
//   - drop: a LOGOUT, PASSWORD or account deletion handled on another
//     node deletes the user's subscriptions at its home.
const (
	pushOpFrame = 'f' // user u64 | type u8 | body
	pushOpDrop  = 'x' // user u64
)

// pushDropTries bounds the attempts at deleting a user's subscriptions at
// its home (a shard move refuses them for a second or two).
const pushDropTries = 6

func (s *Server) startClusterPush() error {
	return s.cl.node.Handle("push", s.servePush)
}

// pushRemote sends a push subscription frame to user's home and writes
// the home's answer to c. body is copied.
func (s *Server) pushRemote(c *Conn, req uint32, user uint64, t codec.Type, body []byte) {
	msg := binary.BigEndian.AppendUint64(append(make([]byte, 0, 10+len(body)), pushOpFrame), user)
	msg = append(append(msg, byte(t)), body...)
	s.homeSend(c, "push", s.servePush, req, user, msg, 0)
}

// servePush answers another node's "push" request, at the user's home.
func (s *Server) servePush(msg []byte, respond func([]byte)) {
	if len(msg) < 9 {
		respond([]byte{keysFailed})
		return
	}
	user, rest := binary.BigEndian.Uint64(msg[1:]), msg[9:]
	if !s.local(user) {
		respond([]byte{keysNotHome})
		return
	}
	var req uint32
	var job func() []byte
	switch msg[0] {
	case pushOpFrame:
		var f codec.Frame
		if len(rest) > 0 {
			f = codec.New(codec.Type(rest[0]))
		}
		if f == nil || f.Decode(rest[1:]) != nil {
			respond(append([]byte{keysOK}, codec.AppendError(nil, codec.CodeMalformed, 0, nil, "bad push request from another node")...))
			return
		}
		var now []byte
		if req, now, job = s.pushJob(user, f); job == nil {
			respond(append([]byte{keysOK}, now...))
			return
		}
	case pushOpDrop:
		job = func() []byte {
			if err := s.subs.DeleteUser(user); err != nil {
				s.log.Error("push: delete subscriptions", zap.Uint64("user", user), zap.Error(err))
				return nil
			}
			return []byte{}
		}
	default:
		respond([]byte{keysFailed})
		return
	}
	if !s.commits.submit(user, func() {
		if !s.local(user) { // frozen for a move since: its new home answers
			respond([]byte{keysNotHome})
			return
		}
		out := job()
		if out == nil {
			respond([]byte{keysFailed})
			return
		}
		respond(append([]byte{keysOK}, out...))
	}) {
		s.counters.busy.Add(1)
		if msg[0] == pushOpDrop {
			respond([]byte{keysFailed})
			return
		}
		respond(append([]byte{keysOK}, codec.AppendError(nil, codec.CodeBusy, req, nil, "too many requests queued; retry")...))
	}
}

// deletePushSubscriptions deletes user's subscriptions (and any push due
// to it) at its home: here, or by request, tried again while the home
// does not answer or the shard is moving. It may wait: not on an event
// loop.
func (s *Server) deletePushSubscriptions(user uint64) error {
	if s.cl == nil {
		return s.subs.DeleteUser(user)
	}
	msg := binary.BigEndian.AppendUint64([]byte{pushOpDrop}, user)
	var err error
	for try := range pushDropTries {
		if try > 0 {
			select {
			case <-s.closing:
				return fmt.Errorf("server: closing: %w", err)
			case <-time.After(time.Duration(try) * 250 * time.Millisecond):
			}
		}
		var home string
		if home, err = s.homeOf(cluster.ShardOf(user)); err != nil {
			continue
		}
		if home == s.cl.node.Name() {
			// Directly: the caller may be on the user's lane (LOGOUT).
			return s.subs.DeleteUser(user)
		}
		ctx, cancel := context.WithTimeout(s.ctx(), 10*time.Second)
		var reply []byte
		reply, err = s.cl.node.Request(ctx, home, "push", msg)
		cancel()
		if err == nil && len(reply) > 0 && reply[0] == keysOK {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("server: %s did not delete the push subscriptions of %d (status %v)", home, user, reply)
		}
	}
	return fmt.Errorf("server: push subscriptions of %d not deleted at its home: %w", user, err)
}

// adoptPush takes the push records of a shard imported here (keys) into
// memory: the users' subscription counts, and their due pushes, which
// this node now sends.
func (s *Server) adoptPush(keys [][]byte) {
	var users []uint64
	for _, k := range keys {
		if len(k) >= 9 && (k[0] == store.PrefixPushSub || k[0] == store.PrefixPushDue) {
			users = append(users, binary.BigEndian.Uint64(k[1:]))
		}
	}
	if len(users) == 0 {
		return
	}
	if err := s.subs.Recount(users); err != nil {
		s.log.Error("push: imported subscriptions not counted", zap.Error(err))
	}
	if err := s.pushes.Adopt(users); err != nil {
		s.log.Error("push: imported due pushes not taken", zap.Error(err))
	}
}

// forgetPush drops from memory the subscriptions of the users in a shard
// that left this node (or whose partial copy was cleared here).
func (s *Server) forgetPush(in func(uint64) bool) { s.subs.Forget(in) }
