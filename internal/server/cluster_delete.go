package server

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/cluster"
	"go.uber.org/zap"
)

// Account deletion across nodes (delete.go). The account's home checks
// the password and writes the mark (an "acct" request, op "delete", from
// the node the client is on), then runs the deletion's steps: they are
// resumed there after a restart, as on one node. The groups step is the
// one that reaches beyond the home: each node takes the user out of the
// groups homed there ("gleave"). The session that asked gets OK and
// KICKED 7 from its own node; any other session of the user (a login
// whose directory claim had not landed yet) gets KICKED 7 from the
// "gone" publish the home sends to every other node.

// beginDelete checks user's password and marks the account deleted, at
// its home. On a cluster the home starts the background steps.
func (s *Server) beginDelete(user uint64, password []byte) error {
	if s.cl == nil {
		return s.accounts.BeginDelete(user, password)
	}
	r, err := s.account(cluster.ShardOf(user), acctRequest{Op: "delete", User: user, Password: password, Node: s.cl.node.Name()})
	if err != nil {
		return err
	}
	return accountErr(r)
}

// deleteAtHome is the home's side of beginDelete on a cluster; asker is
// the node whose client asked, which kicks that session itself (after
// its OK).
func (s *Server) deleteAtHome(user uint64, password []byte, asker string) error {
	if err := s.accounts.BeginDelete(user, password); err != nil {
		return err
	}
	s.log.Info("account deletion started", zap.Uint64("user", user))
	s.finishDeletion(user)
	gone := binary.BigEndian.AppendUint64(nil, user)
	for _, n := range s.cl.node.LiveNodes() {
		if n != asker && n != s.cl.node.Name() {
			s.cl.node.Publish(n, "gone", gone)
		}
	}
	if asker != s.cl.node.Name() {
		s.serveGone(gone, nil)
	}
	return nil
}

// serveGone ends this node's session of a deleted user with KICKED 7.
func (s *Server) serveGone(msg []byte, respond func([]byte)) {
	if len(msg) != 8 {
		return
	}
	if c, ok := s.sessions.Lookup(binary.BigEndian.Uint64(msg)); ok {
		s.kick(c, codec.KickDeleted)
	}
}

// leaveAllGroups is account deletion's groups step: the user leaves the
// groups homed here, then every other node of the cluster does the same
// with its own. A node that does not answer fails the step, which is
// retried (finishDeletion) until it does.
func (s *Server) leaveAllGroups(user uint64) error {
	if err := s.leaveGroups(user); err != nil {
		return err
	}
	if s.cl == nil {
		return nil
	}
	m, ok := s.cl.node.Shards()
	if !ok {
		return fmt.Errorf("%w: no shard map", errUnavailable)
	}
	req := binary.BigEndian.AppendUint64(nil, user)
	for _, n := range m.Nodes {
		if n == s.cl.node.Name() {
			continue
		}
		ctx, cancel := context.WithTimeout(s.ctx(), time.Minute)
		reply, err := s.cl.node.Request(ctx, n, "gleave", req)
		cancel()
		if err != nil {
			return fmt.Errorf("leave the groups homed at %s: %w", n, err)
		}
		if len(reply) != 1 || reply[0] != 0 {
			return fmt.Errorf("leave the groups homed at %s: %s", n, reply)
		}
	}
	return nil
}

// serveGroupLeaveAll takes a deleted user out of the groups homed here.
func (s *Server) serveGroupLeaveAll(req []byte, respond func([]byte)) {
	if len(req) != 8 {
		respond([]byte("malformed gleave"))
		return
	}
	go func() { // the leaves wait for commit lanes
		if err := s.leaveGroups(binary.BigEndian.Uint64(req)); err != nil {
			respond([]byte(err.Error()))
			return
		}
		respond([]byte{0})
	}()
}
