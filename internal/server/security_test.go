package server

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
)

func codeOf(err error) codec.Code {
	var e *codec.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

func TestLoginAttemptLimits(t *testing.T) {
	cfg := testConfig(t)
	cfg.FailedLoginsPerUser, cfg.LoginsPerSource = 3, 8
	s := startServer(t, cfg)
	register(t, s, "alice") // one attempt from this source
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := dial(t, s)
	for i := 0; i < 3; i++ {
		if _, err := c.Login(ctx, "alice", "not-her-password"); codeOf(err) != codec.CodeWrongPassword {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	// Past the failures allowed for the name, even the right password waits.
	if _, err := c.Login(ctx, "alice", "password-alice"); codeOf(err) != codec.CodeTooManyLogins {
		t.Fatalf("after 3 failures: %v", err)
	}
	// Past the attempts allowed for the source address, every name waits.
	var err error
	for i := 0; i < 5 && codeOf(err) != codec.CodeTooManyLogins; i++ {
		_, err = dial(t, s).Register(ctx, "user"+string(rune('a'+i)), "password1")
	}
	if codeOf(err) != codec.CodeTooManyLogins {
		t.Fatalf("source limit never applied: %v", err)
	}
	if m := s.counters.loginLimited.Load(); m < 2 {
		t.Fatalf("login_rate rejects counted %d", m)
	}
}

func TestFrameRateLimitCloses(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxFrameRate = 200
	s := startServer(t, cfg)
	c := register(t, s, "alice")
	for i := 0; i < 2000; i++ {
		if c.Ping(uint64(i)) != nil {
			break
		}
	}
	var got codec.Code
	for f := range c.Events() {
		if e, ok := f.(*codec.Error); ok {
			got = e.Code
		}
	}
	if got != codec.CodeRateLimited {
		t.Fatalf("flooding connection ended with %v, want ERROR rate limited", got)
	}
	// Others are unaffected.
	register(t, s, "bob")
}

func TestTokensRevoked(t *testing.T) {
	s := startServer(t, testConfig(t))
	alice := register(t, s, "alice")
	tok := alice.Welcome.Token
	alice.Logout()
	<-alice.Done()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := dial(t, s).Resume(ctx, tok); codeOf(err) != codec.CodeInvalidToken {
		t.Fatalf("token after LOGOUT: %v", err)
	}

	a := login(t, s, "alice")
	old := a.Welcome.Token
	a.WriteRaw((&codec.Password{Old: []byte("password-alice"), New: []byte("a new secret")}).Append(nil))
	w := next[*codec.Welcome](t, a)
	if w.Token == old {
		t.Fatal("password change kept the token")
	}
	if _, err := dial(t, s).Resume(ctx, old); codeOf(err) != codec.CodeInvalidToken {
		t.Fatalf("token after password change: %v", err)
	}
	if _, err := dial(t, s).Login(ctx, "alice", "password-alice"); codeOf(err) != codec.CodeWrongPassword {
		t.Fatalf("old password after change: %v", err)
	}
}

// TestCannotActAsAnother: a session sends and acknowledges only as itself.
func TestCannotActAsAnother(t *testing.T) {
	s := startServer(t, testConfig(t))
	alice, bob, eve := register(t, s, "alice"), register(t, s, "bob"), register(t, s, "eve")
	// Whatever eve sends carries her own id.
	eve.Send(bob.Welcome.User, []byte("this is alice, honest"), true)
	next[*codec.Sent](t, eve)
	if d := next[*codec.Deliver](t, bob); d.From != eve.Welcome.User {
		t.Fatalf("delivery claims to be from %d", d.From)
	}
	// eve cannot acknowledge (delete) alice's inbox: ACK only ever covers
	// what eve's own connection was sent.
	bob.Send(alice.Welcome.User, []byte("for alice"), true)
	d := next[*codec.Deliver](t, alice)
	eve.Ack(d.Seq, true)
	if e := next[*codec.Error](t, eve); e.Code != codec.CodeBadAck {
		t.Fatalf("foreign ack: %v", e.Code)
	}
	if n, _ := s.inbox.Count(alice.Welcome.User); n != 1 {
		t.Fatalf("alice's inbox has %d entries after eve's ack, want 1", n)
	}
	// eve cannot add herself to a group.
	gid := createGroup(t, alice, "private", bob)
	r := request(t, eve, &codec.GroupAdd{GroupMembers: codec.GroupMembers{Req: 7, Group: gid, Users: codec.Users(eve.Welcome.User)}})
	if e, ok := r.(*codec.Error); !ok || e.Code != codec.CodeNotMember {
		t.Fatalf("self-invite: %+v", r)
	}
	_ = client.NewID
}
