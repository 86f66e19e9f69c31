package server

// Tests for rules PROTOCOL.md states that a client could get wrong by
// guessing: each names the section it checks, over real sockets.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
)

// TestSpecResumeRotatesToken (section 2): RESUME answers WELCOME with a
// fresh token of the same session; the token it replaced still resumes
// within the grace (a client that lost the WELCOME), and not after.
func TestSpecResumeRotatesToken(t *testing.T) {
	cfg := testConfig(t)
	cfg.TokenGrace = 300 * time.Millisecond
	s := startServer(t, cfg)
	alice := register(t, s, "alice")
	tok := alice.Welcome.Token
	alice.Close()
	resume := func(tok codec.Token) (codec.Welcome, error) {
		c := dial(t, s)
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return c.Resume(ctx, tok)
	}
	seen := map[codec.Token]bool{tok: true}
	for i := 0; i < 3; i++ {
		w, err := resume(tok)
		if err != nil {
			t.Fatalf("resume %d: %v", i, err)
		}
		if seen[w.Token] || w.User != alice.Welcome.User {
			t.Fatalf("resume %d: token %x for user %d, want a fresh one for %d", i, w.Token, w.User, alice.Welcome.User)
		}
		seen[w.Token] = true
		tok = w.Token
	}
	// The last one rotated out: it works within the grace, then is refused.
	rotated, err := resume(tok)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := resume(tok); err != nil {
		t.Fatalf("within the grace: %v", err)
	}
	// That resume started from tok again: the token issued in between
	// (as if its WELCOME was lost) is dead.
	if _, err := resume(rotated.Token); codeOf(err) != codec.CodeInvalidToken {
		t.Fatalf("the token a grace resume replaced: %v", err)
	}
	waitFor(t, func() bool { _, err := resume(tok); return codeOf(err) == codec.CodeInvalidToken })
}

// TestSpecSeqIsGlobal (section 3): seq comes from one counter shared by
// every inbox, so one user's seqs increase with gaps where other users'
// entries were stored; a client must not read a gap as a lost entry.
func TestSpecSeqIsGlobal(t *testing.T) {
	s := startServer(t, testConfig(t))
	carol := register(t, s, "carol")
	alice := register(t, s, "alice")
	bob := register(t, s, "bob")
	var seqs []uint64 // in send order: alice, bob, alice, bob, ...
	for i := 0; i < 6; i++ {
		to := alice
		if i%2 == 1 {
			to = bob
		}
		carol.Send(to.Welcome.User, []byte(fmt.Sprint(i)), true)
		// Stored (and numbered) before the next one. carol's own inbox
		// gets the delivered receipts, which take seqs of their own.
		for sent := false; !sent; {
			switch f := next[codec.Frame](t, carol).(type) {
			case *codec.Sent:
				sent = true
			case *codec.Receipt:
				carol.Ack(f.Seq, true)
			default:
				t.Fatalf("carol got %T %+v", f, f)
			}
		}
		d := next[*codec.Deliver](t, to)
		to.Ack(d.Seq, true)
		seqs = append(seqs, d.Seq)
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] <= seqs[i-1] {
			t.Fatalf("seqs %v: alice's and bob's entries are not numbered from one counter", seqs)
		}
	}
	if seqs[2]-seqs[0] < 2 {
		t.Fatalf("alice's seqs %d, %d have no gap for bob's %d", seqs[0], seqs[2], seqs[1])
	}
}

// TestSpecQuotaIsForMessagesOnly (sections 3 and 7): the inbox quota
// refuses one-to-one messages (ERROR 31), never receipts, group events or
// group messages: a sender whose inbox is full still gets the ticks of
// what it sent, and its groups' traffic.
func TestSpecQuotaIsForMessagesOnly(t *testing.T) {
	cfg := testConfig(t)
	cfg.Quota = 2
	s := startServer(t, cfg)
	alice := register(t, s, "alice")
	bob := register(t, s, "bob")
	carol := register(t, s, "carol")
	bobID, bobTok := bob.Welcome.User, bob.Welcome.Token
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	g, err := carol.CreateGroup(ctx, "team", bobID)
	if err != nil {
		t.Fatal(err)
	}
	ev := next[*codec.GroupEvent](t, bob)
	bob.Ack(ev.Seq, true) // bob's inbox is empty again

	id, _ := bob.Send(alice.Welcome.User, []byte("hello alice"), true)
	next[*codec.Sent](t, bob)
	bob.Close()
	waitFor(t, func() bool { _, on := s.sessions.Lookup(bobID); return !on })

	// Fill bob's inbox to its quota; one more message is refused.
	for i := 0; i < cfg.Quota; i++ {
		carol.Send(bobID, []byte("filler"), true)
		next[*codec.Sent](t, carol)
	}
	refused, _ := carol.Send(bobID, []byte("one too many"), true)
	if e := next[*codec.Error](t, carol); e.Code != codec.CodeInboxFull || e.ID != refused {
		t.Fatalf("message to a full inbox: ERROR %v for %x", e.Code, e.ID)
	}
	// A group message and a group event still go in.
	carol.SendID(client.NewID(), codec.FlagGroup, g.Group, []byte("to the team"), true)
	next[*codec.Sent](t, carol)
	if err := carol.RenameGroup(ctx, g.Group, "team two"); err != nil {
		t.Fatal(err)
	}
	// alice acknowledges and reads bob's message: both receipts go in too.
	d := next[*codec.Deliver](t, alice)
	alice.Ack(d.Seq, true)
	alice.MarkRead(bobID, 0, d.ID)

	back := dial(t, s)
	if _, err := back.Resume(ctx, bobTok); err != nil {
		t.Fatal(err)
	}
	messages, groupMessages, renamed, kinds := 0, 0, false, map[codec.ReceiptKind]bool{}
	for messages < cfg.Quota || groupMessages < 1 || !renamed || len(kinds) < 2 {
		switch f := next[codec.Frame](t, back).(type) {
		case *codec.Deliver:
			if f.Group == g.Group {
				groupMessages++
			} else {
				messages++
			}
			back.Ack(f.Seq, true)
		case *codec.GroupEvent:
			renamed = renamed || string(f.Name) == "team two"
			back.Ack(f.Seq, true)
		case *codec.Receipt:
			if f.IDs.Len() != 1 || f.IDs.At(0) != id {
				t.Fatalf("receipt %+v, want one for %x", f, id)
			}
			kinds[f.Kind] = true
			back.Ack(f.Seq, true)
		default:
			t.Fatalf("bob got %T %+v after %d messages, %d group messages, receipts %v", f, f, messages, groupMessages, kinds)
		}
	}
	if messages != cfg.Quota {
		t.Fatalf("bob got %d one-to-one messages with a quota of %d", messages, cfg.Quota)
	}
}

// TestSpecRegisterCountsAsLoginAttempt (section 7): REGISTER counts
// against the password attempts allowed per source address, like LOGIN;
// RESUME, which hashes no password, does not.
func TestSpecRegisterCountsAsLoginAttempt(t *testing.T) {
	const perSource = 3
	// The limit counts per minute; a run that straddles a minute boundary
	// proves nothing and is run again.
	for attempt := 0; ; attempt++ {
		minute := time.Now().Unix() / 60
		ok := registerPastLimit(t, perSource)
		if time.Now().Unix()/60 == minute {
			if !ok {
				t.Fatalf("REGISTER %d from one source was not refused with ERROR 26", perSource+1)
			}
			return
		}
		if attempt == 2 {
			t.Fatal("every run straddled a minute boundary")
		}
	}
}

// registerPastLimit registers perSource users from 127.0.0.1 on a fresh
// server, then reports whether one more REGISTER is refused with ERROR 26
// while RESUME still gets in.
func registerPastLimit(t *testing.T, perSource int) bool {
	cfg := testConfig(t)
	cfg.LoginsPerSource = perSource
	s := startServer(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var tok codec.Token
	for i := 0; i < perSource; i++ {
		w, err := dial(t, s).Register(ctx, fmt.Sprintf("user%d", i), "password1")
		if err != nil {
			return false // refused too early: the counts are off (or the minute turned)
		}
		tok = w.Token
	}
	if _, err := dial(t, s).Register(ctx, "onemore", "password1"); codeOf(err) != codec.CodeTooManyLogins {
		return false
	}
	if _, err := dial(t, s).Resume(ctx, tok); err != nil {
		t.Fatalf("RESUME refused after the password attempts ran out: %v", err)
	}
	return true
}

// TestSpecErrorDetailSaysWhy (section 7): an ERROR a person must act on
// says what to change in its detail; a failed login says nothing more
// than its code, which tells a guesser nothing.
func TestSpecErrorDetailSaysWhy(t *testing.T) {
	s := startServer(t, testConfig(t))
	register(t, s, "alice")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name, password string
		code           codec.Code
		says           string
	}{
		{"al", "password1", codec.CodeInvalidName, "3 to 32 bytes"},
		{"Alice", "password1", codec.CodeInvalidName, "a-z"},
		{"bob", "short", codec.CodeInvalidPassword, "8 to 128 bytes"},
	} {
		_, err := dial(t, s).Register(ctx, tc.name, tc.password)
		var e *codec.Error
		if !errors.As(err, &e) || e.Code != tc.code || !strings.Contains(string(e.Detail), tc.says) {
			t.Errorf("REGISTER %q %q: %v (detail %q), want code %v saying %q", tc.name, tc.password, err, detailOf(err), tc.code, tc.says)
		}
	}
	_, err := dial(t, s).Login(ctx, "alice", "wrong-password")
	if codeOf(err) != codec.CodeWrongPassword || detailOf(err) != "" {
		t.Errorf("wrong password: %v, detail %q (want none)", err, detailOf(err))
	}
}

func detailOf(err error) string {
	var e *codec.Error
	if errors.As(err, &e) {
		return string(e.Detail)
	}
	return ""
}
