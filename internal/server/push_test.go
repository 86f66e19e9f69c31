package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/chatd/chatd/client"
	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/push"
	"github.com/chatd/chatd/internal/push/pushtest"
)

// pushServer is a server that may push to a loopback receiver.
func pushServer(t *testing.T, window time.Duration) (Config, *Server, *pushtest.Receiver) {
	t.Helper()
	cfg := testConfig(t)
	cfg.Push = push.Config{Policy: push.Policy{AllowHTTPLoopback: true}, Window: window, Backoff: 10 * time.Millisecond}
	s, recv := startPush(t, cfg)
	return cfg, s, recv
}

func startPush(t testing.TB, cfg Config) (*Server, *pushtest.Receiver) {
	t.Helper()
	s := startServer(t, cfg)
	recv := pushtest.New(s.Push().Key().Public)
	t.Cleanup(recv.Close)
	return s, recv
}

// subscribeOffline registers name, subscribes a receiver device for it,
// and disconnects, waiting until the server has no session for it.
func subscribeOffline(t *testing.T, s *Server, recv *pushtest.Receiver, name string) uint64 {
	t.Helper()
	c := register(t, s, name)
	d := recv.Device(name)
	if err := c.PushSubscribe(ctx10(t), d.Endpoint, d.P256dh, d.Auth); err != nil {
		t.Fatal(err)
	}
	u := c.Welcome.User
	c.Close()
	waitFor(t, func() bool { return !s.online(u) })
	return u
}

// sendAll sends n messages to to and waits for every SENT, returning
// each SEND-to-SENT round trip.
func sendAll(t *testing.T, from *client.Conn, to uint64, n int) []time.Duration {
	t.Helper()
	rtts := make([]time.Duration, 0, n)
	for i := range n {
		start := time.Now()
		if _, err := from.Send(to, []byte(fmt.Sprintf("m%d", i)), true); err != nil {
			t.Fatal(err)
		}
		next[*codec.Sent](t, from)
		rtts = append(rtts, time.Since(start))
	}
	return rtts
}

func pushCount(t *testing.T, p pushtest.Push) int {
	t.Helper()
	var v struct {
		Kind  string `json:"kind"`
		Count int    `json:"count"`
	}
	if err := json.Unmarshal(p.Payload, &v); err != nil || v.Kind != "sync" {
		t.Fatalf("payload %q: %v", p.Payload, err)
	}
	return v.Count
}

// settled waits until the push service has nothing open, queued or in
// flight: every due push was sent or failed.
func settled(t *testing.T, s *Server) push.Stats {
	t.Helper()
	var st push.Stats
	waitFor(t, func() bool {
		st = s.Push().Stats()
		done := st.Sent + st.Dropped + st.Online
		for _, v := range st.Failed {
			done += v
		}
		return st.QueueDepth == 0 && done >= st.Opened
	})
	return st
}

// An offline user gets exactly one push for a burst of messages; its
// payload (decrypted by the receiver, which also checked the VAPID JWT)
// is the count and nothing else.
func TestPushOfflineBurstOnePush(t *testing.T) {
	_, s, recv := pushServer(t, 300*time.Millisecond)
	bob := subscribeOffline(t, s, recv, "bob")
	alice := register(t, s, "alice")
	start := time.Now()
	sendAll(t, alice, bob, 5)
	got, err := recv.Wait(1, 10*time.Second)
	if err != nil {
		t.Fatal(err, recv.Bad())
	}
	if n := pushCount(t, got[0]); n != 5 || got[0].Urgency != "high" {
		t.Fatalf("push count %d urgency %q, want 5 and high", n, got[0].Urgency)
	}
	if st := settled(t, s); st.Opened != 1 || st.Sent != 1 {
		t.Fatalf("stats %+v", st)
	}
	if n := len(recv.Pushes()); n != 1 {
		t.Fatalf("%d pushes for one burst", n)
	}
	t.Logf("first SEND to the push service's receipt: %v (window 300ms)", got[0].At.Sub(start))

	// The subscription lists with the key to subscribe with.
	c := login(t, s, "bob")
	subs, err := c.PushSubscriptions(ctx10(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(subs.Subs) != 1 || subs.Subs[0].Device != 1 || string(subs.Subs[0].Endpoint) != recv.URL+"/push/bob" ||
		!slices.Equal(subs.Key, s.Push().Key().Public) {
		t.Fatalf("PUSH_SUBS %+v", subs)
	}
}

// A user with a live session gets no push: nothing even becomes due.
func TestPushOnlineUserNone(t *testing.T) {
	_, s, recv := pushServer(t, 50*time.Millisecond)
	bobConn := register(t, s, "bob")
	d := recv.Device("bob")
	if err := bobConn.PushSubscribe(ctx10(t), d.Endpoint, d.P256dh, d.Auth); err != nil {
		t.Fatal(err)
	}
	alice := register(t, s, "alice")
	sendAll(t, alice, bobConn.Welcome.User, 3)
	for range 3 {
		m := next[*codec.Deliver](t, bobConn)
		bobConn.Ack(m.Seq, true)
	}
	// Due runs on the inbox lane before the DELIVER is written: by now it
	// had its chance to open a window.
	if st := s.Push().Stats(); st.Opened != 0 {
		t.Fatalf("a push became due for an online user: %+v", st)
	}
	if n := len(recv.Pushes()); n != 0 {
		t.Fatalf("%d pushes", n)
	}
}

// Receipts for an offline sender push at low urgency.
func TestPushReceiptLowUrgency(t *testing.T) {
	_, s, recv := pushServer(t, 50*time.Millisecond)
	alice := subscribeOffline(t, s, recv, "alice")
	bob := register(t, s, "bob")
	// alice is offline: store a message from her as if she had sent it
	// before leaving, by logging in, sending and leaving again.
	a := login(t, s, "alice")
	sendAll(t, a, bob.Welcome.User, 1)
	a.Close()
	waitFor(t, func() bool { return !s.online(alice) })
	m := next[*codec.Deliver](t, bob)
	bob.Ack(m.Seq, true) // a delivered receipt for alice, who is offline
	got, err := recv.Wait(1, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Urgency != "low" {
		t.Fatalf("receipt push urgency %q", got[0].Urgency)
	}
}

// Endpoints the server will not post to are refused with documented codes.
func TestPushSubscribeRefused(t *testing.T) {
	cfg := testConfig(t)
	cfg.Push = push.Config{Policy: push.Policy{AllowHosts: []string{"fcm.googleapis.com", "*.push.apple.com"}}}
	s := startServer(t, cfg)
	c := register(t, s, "bob")
	keys := pushtest.New(nil) // only for a device's keys
	defer keys.Close()
	good := keys.Device("x")
	badKey := append([]byte{4}, make([]byte, 64)...)
	for _, tc := range []struct {
		endpoint string
		key      []byte
		want     codec.Code
	}{
		{"http://fcm.googleapis.com/fcm/send/a", good.P256dh, codec.CodePushNotHTTPS},
		{"http://127.0.0.1:9/push/a", good.P256dh, codec.CodePushNotHTTPS}, // loopback not allowed here
		{"https://evil.example/a", good.P256dh, codec.CodePushHostRefused},
		{"https://10.0.0.1/a", good.P256dh, codec.CodePushHostRefused},
		{"https://fcm.googleapis.com/fcm/send/a", badKey, codec.CodePushBadKey},
	} {
		err := c.PushSubscribe(ctx10(t), tc.endpoint, tc.key, good.Auth)
		var e *codec.Error
		if !errors.As(err, &e) || e.Code != tc.want {
			t.Errorf("PUSH_SUBSCRIBE %s: %v, want ERROR %d", tc.endpoint, err, tc.want)
		}
	}
	if err := c.PushSubscribe(ctx10(t), "https://web.push.apple.com/QG", good.P256dh, good.Auth); err != nil {
		t.Fatalf("an allowed endpoint: %v", err)
	}
	err := c.PushRemove(ctx10(t), 2)
	var e *codec.Error
	if !errors.As(err, &e) || e.Code != codec.CodePushUnknownDevice {
		t.Fatalf("PUSH_REMOVE of device 2: %v", err)
	}
	if err := c.PushRemove(ctx10(t), 1); err != nil {
		t.Fatal(err)
	}
	if s.PushSubscriptions().Has(c.Welcome.User) {
		t.Fatal("PUSH_REMOVE left the subscription")
	}
}

// The push service's 410 deletes the subscription.
func TestPushGoneDropsSubscription(t *testing.T) {
	_, s, recv := pushServer(t, 20*time.Millisecond)
	bob := subscribeOffline(t, s, recv, "bob")
	recv.Answer = func(int, string, http.Header) int { return 410 }
	sendAll(t, register(t, s, "alice"), bob, 1)
	waitFor(t, func() bool { return !s.PushSubscriptions().Has(bob) })
	if st := settled(t, s); st.Dropped != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// LOGOUT and PASSWORD delete the user's subscriptions.
func TestPushLogoutAndPasswordDropSubscriptions(t *testing.T) {
	_, s, recv := pushServer(t, time.Second)
	for _, how := range []string{"logout", "password"} {
		c := register(t, s, how)
		d := recv.Device(how)
		if err := c.PushSubscribe(ctx10(t), d.Endpoint, d.P256dh, d.Auth); err != nil {
			t.Fatal(err)
		}
		u := c.Welcome.User
		if !s.PushSubscriptions().Has(u) {
			t.Fatal("not subscribed")
		}
		if how == "logout" {
			c.Logout()
		} else {
			c.WriteRaw((&codec.Password{Old: []byte("password-" + how), New: []byte("another-password")}).Append(nil))
		}
		waitFor(t, func() bool { return !s.PushSubscriptions().Has(u) })
	}
}

// A push service that hangs never delays SENT: SEND-to-SENT with every
// push worker stuck and the queue full is as fast as with a push service
// that answers at once.
func TestPushHangingServiceNeverDelaysSent(t *testing.T) {
	const users, perUser = 20, 15
	measure := func(hang bool) []time.Duration {
		cfg := testConfig(t)
		cfg.Push = push.Config{Policy: push.Policy{AllowHTTPLoopback: true}, Window: time.Millisecond, Workers: 1, Queue: 2, Timeout: time.Minute}
		s, stop := serve(t, cfg)
		recv := pushtest.New(s.Push().Key().Public)
		if hang {
			recv.Hang = make(chan struct{})
		}
		var ids []uint64
		for i := range users {
			ids = append(ids, subscribeOffline(t, s, recv, fmt.Sprintf("user%02d", i)))
		}
		alice := register(t, s, "alice")
		var rtts []time.Duration
		for range perUser {
			for _, u := range ids {
				rtts = append(rtts, sendAll(t, alice, u, 1)...)
			}
		}
		if hang {
			if st := s.Push().Stats(); st.QueueDepth < 2 || st.Sent != 0 {
				t.Errorf("the hanging service did not fill the queue: %+v", st)
			}
			close(recv.Hang)
		} else if len(recv.Pushes()) == 0 {
			t.Error("no push reached the answering service")
		}
		alice.Close()
		if err := stop(); err != nil {
			t.Error(err)
		}
		recv.Close()
		return rtts
	}
	normal, hung := measure(false), measure(true)
	pn, ph := percentiles(normal), percentiles(hung)
	t.Logf("SEND-to-SENT over %d messages to offline subscribed users: push service answering p50 %v p99 %v max %v; hanging p50 %v p99 %v max %v",
		len(normal), pn[0], pn[1], pn[2], ph[0], ph[1], ph[2])
	if ph[1] > 250*time.Millisecond && ph[1] > 4*pn[1] {
		t.Fatalf("SEND-to-SENT p99 %v with the push service hanging, %v without", ph[1], pn[1])
	}
}

// percentiles returns p50, p99 and the max.
func percentiles(d []time.Duration) [3]time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return [3]time.Duration{s[len(s)/2], s[len(s)*99/100], s[len(s)-1]}
}

// A push due when the server stops is delivered after it starts again,
// since the message is still in the inbox.
func TestPushDueSurvivesRestart(t *testing.T) {
	cfg := testConfig(t)
	cfg.Push = push.Config{Policy: push.Policy{AllowHTTPLoopback: true}, Window: time.Hour}
	s, stop := serve(t, cfg)
	recv := pushtest.New(s.Push().Key().Public)
	defer recv.Close()
	bob := subscribeOffline(t, s, recv, "bob")
	alice := register(t, s, "alice")
	sendAll(t, alice, bob, 2)
	alice.Close()
	if st := s.Push().Stats(); st.Opened != 1 || st.Sent != 0 {
		t.Fatalf("before restart: %+v", st)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	cfg.Push.Window = 20 * time.Millisecond
	s2 := startServer(t, cfg)
	if !slices.Equal(s2.Push().Key().Public, s.Push().Key().Public) {
		t.Fatal("the VAPID key changed across a restart")
	}
	got, err := recv.Wait(1, 10*time.Second)
	if err != nil {
		t.Fatal(err, recv.Bad())
	}
	if n := pushCount(t, got[0]); n != 2 || got[0].Device != "bob" {
		t.Fatalf("push after restart: count %d to %s", n, got[0].Device)
	}
}

// TestPushLatency measures one message stored for an offline user to its
// push at the push service, over 30 users, with a 10 ms window (the
// default is 2 s: add the difference).
func TestPushLatency(t *testing.T) {
	const users, window = 30, 10 * time.Millisecond
	_, s, recv := pushServer(t, window)
	var ids []uint64
	for i := range users {
		ids = append(ids, subscribeOffline(t, s, recv, fmt.Sprintf("user%02d", i)))
	}
	alice := register(t, s, "alice")
	var lat []time.Duration
	for i, u := range ids {
		start := time.Now()
		sendAll(t, alice, u, 1)
		got, err := recv.Wait(i+1, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if got[i].Device != fmt.Sprintf("user%02d", i) {
			t.Fatalf("push %d went to %s", i, got[i].Device)
		}
		lat = append(lat, got[i].At.Sub(start))
	}
	p := percentiles(lat)
	t.Logf("SEND to the push service's receipt, window %v, %d users: p50 %v p99 %v max %v", window, users, p[0], p[1], p[2])
	for _, d := range lat {
		if d < window {
			t.Fatalf("a push %v after its message: before the window closed", d)
		}
	}
	// The receiver records a push before it answers; the server counts it
	// when the answer arrives.
	if st := settled(t, s); st.Sent != users || s.Push().Latency().Snapshot().Count != users {
		t.Fatalf("chatd_push_seconds counted %d pushes, %d sent, want %d", s.Push().Latency().Snapshot().Count, st.Sent, users)
	}
}
