package server

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/chatd/chatd/internal/account"
	"go.uber.org/zap"
)

// loginKind is the frame that opened an authentication attempt.
type loginKind uint8

const (
	kindRegister loginKind = iota
	kindLogin
	kindResume
	kindPassword // PASSWORD on a live session: a stolen session guessing the password is a failed login too
	numLoginKinds
)

var loginKindNames = [numLoginKinds]string{"register", "login", "resume", "password"}

func (k loginKind) String() string { return loginKindNames[k] }

// failReason says why an authentication attempt failed
// (chatd_login_failures_total).
type failReason uint8

const (
	failWrongPassword   failReason = iota // LOGIN: the password did not match (ERROR 11)
	failUnknownUser                       // LOGIN: no such name (ERROR 10)
	failInvalidToken                      // RESUME: the token is unknown, revoked or expired
	failNameTaken                         // REGISTER: the name exists
	failInvalidName                       // REGISTER: the name breaks a naming rule
	failInvalidPassword                   // REGISTER: the password breaks a rule
	failRateLimited                       // too many attempts from the source or for the name
	failBusy                              // password hashing saturated
	failUnavailable                       // the account's home node did not answer (cluster)
	failStorageFull                       // REGISTER while the disk is nearly full
	failClaimLost                         // a login on another node won the race for the user (cluster)
	failInternal                          // anything else: logged as an error where it happened
	numFailReasons
)

var failReasonNames = [numFailReasons]string{
	"wrong_password", "unknown_user", "invalid_token", "name_taken", "invalid_name", "invalid_password",
	"rate_limited", "busy", "unavailable", "storage_full", "claim_lost", "internal",
}

func (r failReason) String() string { return failReasonNames[r] }

// failReasonOf classifies an account error as accountCode does.
func failReasonOf(err error) failReason {
	switch {
	case errors.Is(err, account.ErrWrongPassword):
		return failWrongPassword
	case errors.Is(err, account.ErrUnknownUser):
		return failUnknownUser
	case errors.Is(err, account.ErrInvalidToken):
		return failInvalidToken
	case errors.Is(err, account.ErrNameTaken):
		return failNameTaken
	case errors.Is(err, account.ErrInvalidName):
		return failInvalidName
	case errors.Is(err, account.ErrInvalidPassword):
		return failInvalidPassword
	case errors.Is(err, account.ErrBusy):
		return failBusy
	case errors.Is(err, errUnavailable):
		return failUnavailable
	}
	return failInternal
}

// failLogged is how many failed attempts are logged one by one, with the
// client's address, per failLogEvery; the rest are counted, and the first
// failure of the next interval logs how many went unlogged. A guesser
// cannot flood the log, and an operator still sees who is guessing.
const (
	failLogged   = 10
	failLogEvery = time.Minute
)

// loginFailures counts failed authentication attempts by reason and logs
// them at a bounded rate, with no lock and no goroutine (the same scheme
// as conn's bad-input log, which its sweeper summarizes; the server has
// no sweeper, so an interval ends at the next failure after it).
type loginFailures struct {
	total   [numFailReasons]atomic.Uint64
	window  atomic.Int64  // the current interval's number (unix time / failLogEvery)
	logged  atomic.Uint32 // lines written in it
	dropped atomic.Uint64 // failures it did not log
}

// note counts one failure and logs it if the interval's quota allows.
func (f *loginFailures) note(log *zap.Logger, now time.Time, kind loginKind, why failReason, remote string) {
	f.total[why].Add(1)
	w := now.UnixNano() / int64(failLogEvery)
	if old := f.window.Load(); old != w && f.window.CompareAndSwap(old, w) {
		f.logged.Store(0)
		if n := f.dropped.Swap(0); n > 0 {
			log.Warn("failed logins not logged one by one (over the rate)", zap.Uint64("count", n),
				zap.Duration("interval", failLogEvery))
		}
	}
	if f.logged.Add(1) > failLogged {
		f.dropped.Add(1)
		return
	}
	log.Warn("login failed", zap.Stringer("kind", kind), zap.Stringer("reason", why), zap.String("remote", remote))
}
