package server

import (
	"errors"
	"fmt"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/block"
	"github.com/chatd/chatd/internal/group"
	"go.uber.org/zap"
)

// Blocking, as WhatsApp does it: the blocked user is never told. Their
// SEND to the blocker is answered SENT but stored nowhere, so no
// delivered or read receipt ever comes back; their TYPING is dropped;
// the blocker's presence shows them hidden; and their group add naming
// the blocker is refused with ERROR 71, the same refusal as a "contacts
// only" GROUP_ADDS setting, so it does not tell the two apart. The
// blocker's own SEND to a user they blocked gets ERROR 70: unblock first.
//
// The lists live in package block, in memory and written through with
// Sync; every change runs on the owner's commit lane, so one user's list
// requests are answered in order. On a cluster each user's lists live at
// the user's home, and every check runs where the list it reads is
// (cluster_blocks.go).

// blockFrame handles BLOCK, UNBLOCK, LIST_GET, CONTACT and GROUP_ADDS.
func (s *Server) blockFrame(c *Conn, t codec.Type, body []byte) error {
	f := codec.New(t)
	if err := f.Decode(body); err != nil {
		return s.malformed(c, err)
	}
	user := c.State.user.Load()
	req, job := s.listRequest(user, f)
	if s.cl != nil && !s.local(user) {
		s.listsRemote(c, user, req, t, body, f)
		return nil
	}
	if !s.commits.submit(user, func() { s.reply(c, job()); c.Flush() }) {
		s.counters.busy.Add(1)
		s.errorTo(c, codec.CodeBusy, req, nil, "too many requests queued; retry")
	}
	return nil
}

// listRequest turns a decoded list frame of user into its request number
// and its work on user's commit lane, at user's home, which returns the
// answer frame.
func (s *Server) listRequest(user uint64, f codec.Frame) (req uint32, job func() []byte) {
	switch f := f.(type) {
	case *codec.Block:
		req = f.Req
		change := s.listJob(f.Req, user, codec.ListBlocked, f.User, true)
		job = func() []byte {
			if code, detail := s.listable(user, f.User); code != 0 {
				return codec.AppendError(nil, code, f.Req, nil, "BLOCK: "+detail)
			}
			return change()
		}
	case *codec.Unblock:
		// No existence check: a user may unblock an account deleted since.
		req, job = f.Req, s.listJob(f.Req, user, codec.ListBlocked, f.User, false)
	case *codec.Contact:
		req = f.Req
		change := s.listJob(f.Req, user, codec.ListContacts, f.User, f.On)
		job = func() []byte {
			if f.On {
				if code, detail := s.listable(user, f.User); code != 0 {
					return codec.AppendError(nil, code, f.Req, nil, "CONTACT: "+detail)
				}
			}
			return change()
		}
	case *codec.ListGet:
		req = f.Req
		job = func() []byte {
			return (&codec.List{Req: f.Req, Kind: f.Kind, Users: codec.Users(s.blocks.List(user, f.Kind)...)}).Append(nil)
		}
	case *codec.GroupAdds:
		req = f.Req
		job = func() []byte {
			if err := s.blocks.SetAddsFrom(user, f.From); err != nil {
				s.log.Error("group-add setting not stored", zap.Error(err))
				return codec.AppendError(nil, codec.CodeInternal, f.Req, nil, "setting not stored; retry")
			}
			return (&codec.OK{Req: f.Req}).Append(nil)
		}
	}
	return req, job
}

// listable checks a user named to be put on one of user's lists. On a
// cluster a user homed elsewhere is looked up at its home (from the
// commit lane, as a group create does).
func (s *Server) listable(user, other uint64) (codec.Code, string) {
	if other == user {
		return codec.CodeSelfSend, "names yourself"
	}
	if s.cl != nil && !s.local(other) {
		switch err := s.usersExist([]uint64{other}); {
		case errors.Is(err, group.ErrInvalid):
			return codec.CodeUnknownUser, fmt.Sprintf("no user %d", other)
		case err != nil:
			return codec.CodeUnavailable, err.Error()
		}
		return 0, ""
	}
	if !s.accounts.Exists(other) {
		return codec.CodeUnknownUser, fmt.Sprintf("no user %d", other)
	}
	return 0, ""
}

// listJob is the commit-lane work of BLOCK, UNBLOCK and CONTACT: the
// change is durable before OK. A change of the block list is a change of
// what other users may see of user's presence, so its watchers hear of
// it.
func (s *Server) listJob(req uint32, user uint64, kind codec.ListKind, other uint64, on bool) func() []byte {
	return func() []byte {
		err := s.blocks.Set(user, kind, other, on)
		switch {
		case errors.Is(err, block.ErrListFull):
			return codec.AppendError(nil, codec.CodeListFull, req, nil, err.Error())
		case err != nil:
			s.log.Error("list change not stored", zap.Error(err))
			return codec.AppendError(nil, codec.CodeInternal, req, nil, "list change not stored; retry")
		}
		if kind == codec.ListBlocked {
			s.presence.Changed(user, 0)
		}
		return (&codec.OK{Req: req}).Append(nil)
	}
}

// blockedSend answers the SEND of a user whom the recipient blocked as
// if it had been stored: SENT, with nothing written anywhere.
func (s *Server) blockedSend(c *Conn, id codec.MsgID) {
	if buf, ok := c.Begin(); ok {
		c.End((&codec.Sent{ID: id, Time: uint64(time.Now().UnixMilli())}).Append(buf))
	}
	s.counters.sent.Add(1)
}

// errAddRefused is a group create or add naming a user who does not
// take adds from the actor (ERROR 71).
var errAddRefused = errors.New("add refused")

// addsAllowed refuses a group create or add by actor naming a user who
// blocked actor, or who takes adds from contacts only and does not have
// actor among them. Users homed on other nodes are checked at their
// homes.
func (s *Server) addsAllowed(actor uint64, users []uint64) error {
	others := make([]uint64, 0, len(users))
	for _, u := range users {
		if u != actor {
			others = append(others, u)
		}
	}
	here, away, err := s.byHome(others)
	if err != nil {
		return err
	}
	for _, u := range here {
		if !s.blocks.AcceptsAdd(u, actor) {
			return fmt.Errorf("%w: user %d does not accept group adds from you", errAddRefused, u)
		}
	}
	for home, users := range away {
		if err := s.addsAllowedAt(home, actor, users); err != nil {
			return err
		}
	}
	return nil
}
