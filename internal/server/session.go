package server

import (
	"sync/atomic"

	"github.com/chatd/chatd/internal/conn"
	"github.com/chatd/chatd/internal/router"
)

// Conn is a client connection carrying a session.
type Conn = conn.Conn[session]

// session is the per-connection protocol state, stored inline in the
// connection. It stays small because a million idle sessions pay for
// every field: no maps, timers or goroutines. The delivery state is the
// router's (router.Session), kept inline here. Fields are
// grouped by who owns them, and ordered within a group so that no padding
// is wasted (TestSessionStaysSmall).
type session struct {
	// Atomics, read anywhere without a lock. The event loop moves auth
	// from authNone to authPending (one attempt at a time); whoever
	// finishes the attempt (a registration goroutine, or the loop itself
	// for RESUME) sets user and then authDone, or goes back to authNone.
	// Closed sets gone; an authentication that finishes after it sees gone
	// and takes back its router entry.
	auth atomic.Uint32 // authNone, authPending, authDone
	gone atomic.Bool   // the connection closed
	// sentDelivered is the connection's turn's own (set by OPTIONS, read
	// by SEND, both on the turn), in gone's padding: SENT_DELIVERED asked.
	sentDelivered bool
	user          atomic.Uint64 // set once, before auth becomes authDone
	seen          atomic.Uint32 // the connection clock (conn.LastRead) when the session's last use was last recorded (touchSession)
	held          atomic.Uint32 // recipients held behind a SEND refused for now (holds.go); in seen's padding

	// route is the delivery state, owned by the router (pushed, acked,
	// window, backlog), and its lock, which also guards sid and subs
	// (lock order: route, then Conn's queue): one mutex per session.
	route router.Session
	sid   uint64   // the account session (account.Issued) LOGOUT and SESSION_REVOKE end
	subs  []uint64 // users whose presence this connection watches
}

const (
	authNone uint32 = iota
	authPending
	authDone
)
