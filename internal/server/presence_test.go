package server

import (
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
)

// waitTicks waits until the presence ticker has completed n more ticks
// than when it was called: a change made before the call has then been
// sent and its last-seen time written.
func waitTicks(t testing.TB, s *Server, n uint64) {
	t.Helper()
	target := s.presence.Ticks() + n
	waitFor(t, func() bool { return s.presence.Ticks() >= target })
}

func TestPresence(t *testing.T) {
	cfg := testConfig(t)
	cfg.PresenceInterval = 50 * time.Millisecond
	s := startServer(t, cfg)
	bob := register(t, s, "bob")
	alice := register(t, s, "alice")
	aliceID := alice.Welcome.User
	alice.Close()
	waitFor(t, func() bool { _, on := s.sessions.Lookup(aliceID); return !on })
	waitTicks(t, s, 2) // the coalesced updates of the login and logout went out

	bob.WriteRaw((&codec.Subscribe{Users: codec.Users(aliceID)}).Append(nil))
	if p := next[*codec.Presence](t, bob); p.User != aliceID || p.State != codec.PresenceOffline {
		t.Fatalf("initial: %+v", p)
	}
	a := login(t, s, "alice")
	if p := next[*codec.Presence](t, bob); p.State != codec.PresenceOnline {
		t.Fatalf("after login: %+v", p)
	}
	a.Close()
	p := next[*codec.Presence](t, bob)
	if p.State != codec.PresenceOffline || time.Since(time.UnixMilli(int64(p.LastSeen))) > 5*time.Second {
		t.Fatalf("after logout: %+v", p)
	}

	// Hiding last seen: subscribers see "hidden", whatever the state.
	a = login(t, s, "alice")
	next[*codec.Presence](t, bob)
	a.WriteRaw((&codec.Privacy{Flags: codec.PrivacyHideLastSeen}).Append(nil))
	if p := next[*codec.Presence](t, bob); p.State != codec.PresenceHidden || p.LastSeen != 0 {
		t.Fatalf("hidden: %+v", p)
	}
	a.WriteRaw((&codec.Privacy{}).Append(nil))
	next[*codec.Presence](t, bob)
	a.Close()
	next[*codec.Presence](t, bob)

	// A flapping user costs watchers at most one update per interval.
	start := time.Now()
	for i := 0; i < 20; i++ {
		c := login(t, s, "alice")
		c.Close()
	}
	flapped := time.Since(start)
	waitTicks(t, s, 2) // every coalesced update of the flaps went out
	updates := 0
	for len(bob.Events()) > 0 {
		if _, ok := (<-bob.Events()).(*codec.Presence); ok {
			updates++
		}
	}
	if limit := int(flapped/cfg.PresenceInterval) + 3; updates > limit || updates >= 40 {
		t.Fatalf("%d presence updates for 40 changes in %v (limit %d)", updates, flapped, limit)
	}
	t.Logf("40 changes in %v reached the watcher as %d updates", flapped, updates)
}

func TestTypingIsEphemeral(t *testing.T) {
	s := startServer(t, testConfig(t))
	alice, bob := register(t, s, "alice"), register(t, s, "bob")
	alice.Typing(bob.Welcome.User, true)
	if f := next[*codec.IsTyping](t, bob); f.From != alice.Welcome.User || f.State != codec.TypingStarted {
		t.Fatalf("%+v", f)
	}
	bob.Close()
	waitFor(t, func() bool { _, on := s.sessions.Lookup(bob.Welcome.User); return !on })
	alice.Typing(bob.Welcome.User, true)
	alice.Send(bob.Welcome.User, []byte("after typing"), true)
	next[*codec.Sent](t, alice)
	// Back online: the message is there, the typing never was.
	b := login(t, s, "bob")
	d := next[*codec.Deliver](t, b)
	if string(d.Body) != "after typing" {
		t.Fatalf("got %q", d.Body)
	}
	if n, _ := s.inbox.Count(bob.Welcome.User); n != 1 {
		t.Fatalf("%d inbox entries: typing was stored", n)
	}
	// Group typing reaches online members only.
	carol := register(t, s, "carol")
	gid := createGroup(t, alice, "g", b, carol)
	alice.WriteRaw((&codec.Typing{To: gid, Flags: codec.FlagGroup, State: codec.TypingStarted}).Append(nil))
	for _, c := range []*client.Conn{b, carol} {
		if f := next[*codec.IsTyping](t, c); f.Group != gid || f.From != alice.Welcome.User {
			t.Fatalf("group typing: %+v", f)
		}
	}
}

// presenceUntilPong returns the PRESENCE frames c receives before the PONG
// to a PING sent now: since a tick queues its updates before it returns,
// the PONG comes after every update of the ticks run so far.
func presenceUntilPong(t *testing.T, c *client.Conn, nonce uint64) []*codec.Presence {
	t.Helper()
	var out []*codec.Presence
	for _, f := range pong(t, c, nonce, 10*time.Second) {
		if p, ok := f.(*codec.Presence); ok {
			out = append(out, p)
		}
	}
	return out
}

// TestPresenceNeverRepeats drives the coalescing tick by hand: alice
// reconnects twenty times, each time within one interval, and bob must
// hear "online" once, not once per interval.
func TestPresenceNeverRepeats(t *testing.T) {
	cfg := testConfig(t)
	cfg.PresenceInterval = time.Hour // the test runs every tick itself
	s := startServer(t, cfg)
	bob, alice := register(t, s, "bob"), register(t, s, "alice")
	aliceID := alice.Welcome.User
	bob.WriteRaw((&codec.Subscribe{Users: codec.Users(aliceID)}).Append(nil))
	if got := presenceUntilPong(t, bob, 1); len(got) != 1 || got[0].State != codec.PresenceOnline {
		t.Fatalf("SUBSCRIBE answered %+v", got)
	}
	s.presence.Tick() // alice's login, already reported by the answer
	a := alice
	for i := 0; i < 20; i++ {
		a.Close()
		waitFor(t, func() bool { _, on := s.sessions.Lookup(aliceID); return !on })
		a = login(t, s, "alice")
		s.presence.Tick()
	}
	got := presenceUntilPong(t, bob, 2)
	if len(got) != 0 {
		t.Fatalf("bob was sent %d updates while alice stayed online at every tick: %+v", len(got), got[0])
	}
	// A real change still goes out, once.
	a.Close()
	waitFor(t, func() bool { _, on := s.sessions.Lookup(aliceID); return !on })
	s.presence.Tick()
	s.presence.Tick()
	if got := presenceUntilPong(t, bob, 3); len(got) != 1 || got[0].State != codec.PresenceOffline || got[0].LastSeen == 0 {
		t.Fatalf("after alice left: %+v", got)
	}
}
