package server

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/chatd/chatd/codec"
	"go.uber.org/zap"
)

// Account deletion (ACCOUNT_DELETE). The password is checked and the
// mark "deleting" written together with the revocation of every token
// (account.BeginDelete, one Sync write): from then on the account exists
// for nobody, and OK answers, then KICKED (reason account deleted). The
// rest runs in the background, one step after another (deleters.go), and
// account.FinishDelete ends it. Every step may run again with the same
// result, and a start finds the deletions a stop or crash interrupted
// and runs them from the first step: a deletion once answered OK always
// completes. On a cluster all of it runs at the account's home
// (cluster_delete.go).

// accountDelete handles ACCOUNT_DELETE. The password hash is slow, so it
// runs off the event loop, like PASSWORD.
func (s *Server) accountDelete(c *Conn, body []byte) error {
	var f codec.AccountDelete
	if err := f.Decode(body); err != nil {
		return s.malformed(c, err)
	}
	user := c.State.user.Load()
	if !s.logins.allow(sourceOf(c), strconv.FormatUint(user, 10)) {
		s.errorTo(c, codec.CodeTooManyLogins, f.Req, nil, "too many attempts; retry in a minute")
		return nil
	}
	req, pass := f.Req, append([]byte(nil), f.Password...)
	go func() {
		err := s.beginDelete(user, pass)
		if err != nil {
			s.errorTo(c, s.accountCode(err), req, nil, accountDetail(err))
			c.Flush()
			return
		}
		s.reply(c, (&codec.OK{Req: req}).Append(nil))
		s.kick(c, codec.KickDeleted)
		if s.cl == nil { // a cluster's home started it (deleteAtHome)
			s.log.Info("account deletion started", zap.Uint64("user", user))
			s.finishDeletion(user)
		}
	}()
	return nil
}

// finishDeletion runs user's deletion steps in the background, retrying
// a failed one, until they are all done or the server closes.
func (s *Server) finishDeletion(user uint64) {
	if _, running := s.deleting.LoadOrStore(user, true); running {
		return // a second ACCOUNT_DELETE while the first runs
	}
	s.deletes.start(func() {
		defer s.deleting.Delete(user)
		wait := 100 * time.Millisecond
		for {
			err := s.deleteSteps(user)
			if err == nil {
				s.log.Info("account deleted", zap.Uint64("user", user))
				return
			}
			if errors.Is(err, errClosing) {
				return // the next start resumes it
			}
			s.log.Error("account deletion step failed; retrying", zap.Uint64("user", user), zap.Error(err))
			select {
			case <-s.closing:
				return
			case <-time.After(wait):
			}
			wait = min(2*wait, 30*time.Second)
		}
	})
}

// errClosing stops a deletion because the server is closing.
var errClosing = errors.New("server: closing")

// deleteSteps runs every deleter for user, then removes the account.
func (s *Server) deleteSteps(user uint64) error {
	for _, d := range s.userDeleters() {
		select {
		case <-s.closing:
			return errClosing
		default:
		}
		if h := s.cfg.deleteStep; h != nil {
			if err := h(d.name); err != nil {
				return err
			}
		}
		if err := d.delete(user); err != nil {
			return fmt.Errorf("delete %s of user %d: %w", d.name, user, err)
		}
	}
	return s.accounts.FinishDelete(user)
}

// background runs goroutines that Close waits for, and refuses new ones
// once it has closed.
type background struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

func (b *background) start(fn func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		fn()
	}()
}

func (b *background) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.wg.Wait()
}
