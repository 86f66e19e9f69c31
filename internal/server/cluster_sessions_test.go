package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
)

// TestClusterSessionsAtHome: a user's sessions live at the account's home
// node, whichever nodes the user connects to: a RESUME on another node
// rotates the token there, SESSIONS from any node lists them all, and
// SESSION_REVOKE from any node kills the session's token cluster-wide and
// kicks its own connection.
func TestClusterSessionsAtHome(t *testing.T) {
	nodes := startClusterNodes(t, 3)
	_, w, err := authOn(t, nodes[0], func(ctx context.Context, c *client.Conn) (codec.Welcome, error) {
		return c.Register(ctx, "alice", "password1")
	})
	if err != nil {
		t.Fatal(err)
	}
	home := homeNode(nodes, w.User)
	away, third := nodes[(home+1)%3], nodes[(home+2)%3]

	// RESUME on a node that is not the home: a fresh token of the same
	// session, and the first one still resumes within its grace.
	phone, pw, err := authOn(t, away, func(ctx context.Context, c *client.Conn) (codec.Welcome, error) {
		return c.Resume(ctx, w.Token)
	})
	if err != nil || pw.Token == w.Token || pw.User != w.User {
		t.Fatalf("resume at %s: %+v, %v", away.name, pw, err)
	}
	phoneList := listSessions(t, phone)
	if len(phoneList) != 1 || phoneList[0].Flags&codec.SessionCurrent == 0 {
		t.Fatalf("sessions seen from %s: %+v", away.name, phoneList)
	}
	if r := ask(t, phone, &codec.SessionLabel{Req: 2, Label: []byte("phone")}); !isOK(r) {
		t.Fatalf("label: %+v", r)
	}

	// A second device logs in on the third node: two sessions, listed
	// the same from there.
	laptop, _, err := authOn(t, third, func(ctx context.Context, c *client.Conn) (codec.Welcome, error) {
		return c.Login(ctx, "alice", "password1")
	})
	if err != nil {
		t.Fatal(err)
	}
	waitKicked(t, phone)
	list := listSessions(t, laptop)
	if len(list) != 2 {
		t.Fatalf("sessions seen from %s: %+v", third.name, list)
	}
	if list[0].Session != phoneList[0].Session { // the phone's was used last (its connection's end) or not
		list[0], list[1] = list[1], list[0]
	}
	if list[0].Session != phoneList[0].Session || string(list[0].Label) != "phone" || list[0].Flags != 0 ||
		list[1].Flags != codec.SessionCurrent|codec.SessionOnline {
		t.Fatalf("sessions seen from %s: %+v", third.name, list)
	}
	if r := ask(t, laptop, &codec.SessionRevoke{Req: 3, Session: list[0].Session}); !isOK(r) {
		t.Fatalf("revoke: %+v", r)
	}
	for _, nd := range nodes { // dead wherever it is presented
		_, _, err := authOn(t, nd, func(ctx context.Context, c *client.Conn) (codec.Welcome, error) {
			return c.Resume(ctx, pw.Token)
		})
		if codeOf(err) != codec.CodeInvalidToken {
			t.Fatalf("the revoked session's token at %s: %v", nd.name, err)
		}
	}
	if r := ask(t, laptop, &codec.SessionRevoke{Req: 4, Session: list[1].Session}); !isOK(r) {
		t.Fatalf("revoking its own session: %+v", r)
	}
	if k := waitKicked(t, laptop); k != codec.KickRevoked {
		t.Fatalf("kicked with %v, want session revoked", k)
	}
}

// TestClusterSessionSweep: on a cluster each node sweeps the sessions of
// the accounts it is home to: idle sessions of users homed on either node
// are deleted without being touched (each node counts its own), and their
// tokens are then refused on any node.
func TestClusterSessionSweep(t *testing.T) {
	t.Setenv("CHATD_TEST_SESSION_IDLE", "2s") // the nodes sweep every 200 ms
	nodes := startClusterNodes(t, 2)
	homed := make([]int, len(nodes))
	var toks []codec.Token
	for i := 0; homed[0] == 0 || homed[1] == 0 || i < 4; i++ {
		c, w, err := authOn(t, nodes[0], func(ctx context.Context, c *client.Conn) (codec.Welcome, error) {
			return c.Register(ctx, fmt.Sprintf("user%d", i), "password1")
		})
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		homed[homeNode(nodes, w.User)]++
		toks = append(toks, w.Token)
	}
	for i, nd := range nodes {
		waitFor(t, func() bool {
			_, text := get(t, "http://"+nd.admin+"/metrics")
			return metricValue(t, text, "chatd_sessions_swept_total") == float64(homed[i])
		})
	}
	for _, tok := range toks {
		_, _, err := authOn(t, nodes[1], func(ctx context.Context, c *client.Conn) (codec.Welcome, error) {
			return c.Resume(ctx, tok)
		})
		var e *codec.Error
		if !errors.As(err, &e) || e.Code != codec.CodeInvalidToken || strings.Contains(string(e.Detail), "expired") {
			t.Fatalf("a swept session's token: %v (a token RESUME found expired, not one the sweep deleted?)", err)
		}
	}
}
