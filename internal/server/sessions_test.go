package server

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/account"
)

// ask sends a session request and returns its answer (SESSION_LIST, OK or
// ERROR), skipping anything else.
func ask(t *testing.T, c *client.Conn, f codec.Frame) codec.Frame {
	t.Helper()
	if err := c.WriteRaw(f.Append(nil)); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(10 * time.Second)
	for {
		switch r := recv[codec.Frame](t, c, deadline).(type) {
		case *codec.SessionList, *codec.OK, *codec.Error:
			return r
		}
	}
}

func listSessions(t *testing.T, c *client.Conn) []codec.SessionInfo {
	t.Helper()
	r, ok := ask(t, c, &codec.Sessions{Req: 1}).(*codec.SessionList)
	if !ok || r.Req != 1 {
		t.Fatalf("SESSIONS answered %+v", r)
	}
	return r.Sessions
}

func resumeWith(t *testing.T, s *Server, tok codec.Token) (*client.Conn, error) {
	t.Helper()
	c := dial(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.Resume(ctx, tok)
	return c, err
}

// TestSessionsListLabelRevoke: each login is a session; SESSIONS lists
// them with label, address and which is the asking one; SESSION_REVOKE
// kills another's token, and revoking one's own session kicks the
// connection with reason 6. Sessions survive a restart.
func TestSessionsListLabelRevoke(t *testing.T) {
	cfg := testConfig(t)
	s, stop := serve(t, cfg)
	phone := register(t, s, "alice")
	if r := ask(t, phone, &codec.SessionLabel{Req: 5, Label: []byte("phone")}); !isOK(r) {
		t.Fatalf("SESSION_LABEL answered %+v", r)
	}
	phoneTok := phone.Welcome.Token
	laptop := login(t, s, "alice") // the one live connection: phone is kicked
	if reason := waitKicked(t, phone); reason != codec.KickElsewhere {
		t.Fatalf("phone kicked with %v", reason)
	}
	list := listSessions(t, laptop)
	if len(list) != 2 {
		t.Fatalf("%d sessions, want 2: %+v", len(list), list)
	}
	me, other := list[0], list[1] // most recently seen first; within one millisecond, either
	if other.Flags&codec.SessionCurrent != 0 && me.LastSeen == other.LastSeen {
		me, other = other, me
	}
	if me.Flags != codec.SessionCurrent|codec.SessionOnline || other.Flags != 0 ||
		string(other.Label) != "phone" || len(me.Label) != 0 ||
		!strings.HasPrefix(string(me.Addr), "127.0.0.1:") || !strings.HasPrefix(string(other.Addr), "127.0.0.1:") ||
		me.LastSeen < other.LastSeen || me.Created == 0 {
		t.Fatalf("sessions: %+v", list)
	}
	if r := ask(t, laptop, &codec.SessionRevoke{Req: 6, Session: me.Session ^ other.Session ^ 1}); !isError(r, codec.CodeUnknownSession) || r.(*codec.Error).Req != 6 {
		t.Fatalf("revoking an unknown session: %+v", r)
	}
	if r := ask(t, laptop, &codec.SessionRevoke{Req: 7, Session: other.Session}); !isOK(r) {
		t.Fatalf("SESSION_REVOKE answered %+v", r)
	}
	if _, err := resumeWith(t, s, phoneTok); codeOf(err) != codec.CodeInvalidToken {
		t.Fatalf("a revoked session's token: %v", err)
	}
	if list := listSessions(t, laptop); len(list) != 1 || list[0].Session != me.Session {
		t.Fatalf("after the revoke: %+v", list)
	}

	// Sessions are on disk: after a restart, a RESUME keeps its session
	// and its label.
	ask(t, laptop, &codec.SessionLabel{Req: 8, Label: []byte("laptop")})
	laptopTok := laptop.Welcome.Token
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	s = startServer(t, cfg)
	again, err := resumeWith(t, s, laptopTok)
	if err != nil {
		t.Fatal(err)
	}
	if list := listSessions(t, again); len(list) != 1 || list[0].Session != me.Session || string(list[0].Label) != "laptop" {
		t.Fatalf("after a restart: %+v", list)
	}
	// Revoking one's own session: OK, then KICKED 6, and the token is dead.
	if r := ask(t, again, &codec.SessionRevoke{Req: 9, Session: me.Session}); !isOK(r) {
		t.Fatalf("revoking one's own session: %+v", r)
	}
	if reason := waitKicked(t, again); reason != codec.KickRevoked {
		t.Fatalf("kicked with %v, want session revoked", reason)
	}
	if _, err := resumeWith(t, s, again.Welcome.Token); codeOf(err) != codec.CodeInvalidToken {
		t.Fatalf("the revoked session's token: %v", err)
	}
}

// TestSessionIdleExpiry: a session unused for the idle time is refused
// (ERROR 25) and leaves the listing, while a connection that stays in use
// keeps its own session fresh.
func TestSessionIdleExpiry(t *testing.T) {
	cfg := testConfig(t)
	cfg.SessionIdle = time.Second
	s := startServer(t, cfg)
	idle := register(t, s, "alice")
	idleTok := idle.Welcome.Token
	active := login(t, s, "alice")
	waitKicked(t, idle)
	// active keeps sending frames (PINGs) while idle's session ages; Check
	// reads the store without touching it. (A listing would delete the
	// expired session, and RESUME could then not say it expired.)
	waitFor(t, func() bool {
		active.Ping(1)
		_, err := s.accounts.Check(idleTok)
		return errors.Is(err, account.ErrTokenExpired)
	})
	_, err := resumeWith(t, s, idleTok)
	var e *codec.Error
	if !errors.As(err, &e) || e.Code != codec.CodeInvalidToken || !strings.Contains(string(e.Detail), "expired") {
		t.Fatalf("an expired session's token: %v", err)
	}
	if list := listSessions(t, active); len(list) != 1 || list[0].Flags&codec.SessionCurrent == 0 {
		t.Fatalf("after idle's session expired: %+v", list)
	}
	// The active connection's session outlives several idle periods.
	start := time.Now()
	for time.Since(start) < 2*cfg.SessionIdle {
		if list := listSessions(t, active); len(list) != 1 {
			t.Fatalf("the active session expired: %+v", list)
		}
		time.Sleep(20 * time.Millisecond) // paces the requests; no condition is awaited
	}
	active.Close()
	// Its last use was recorded at the close: its token resumes.
	waitFor(t, func() bool { _, on := s.sessions.Lookup(active.Welcome.User); return !on })
	if _, err := resumeWith(t, s, active.Welcome.Token); err != nil {
		t.Fatalf("resume after the active connection closed: %v", err)
	}
}
