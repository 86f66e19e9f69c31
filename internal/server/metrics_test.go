package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/offline"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// scrape reads admin's /metrics and parses it as Prometheus would.
func scrape(t *testing.T, admin string) map[string]*dto.MetricFamily {
	t.Helper()
	code, text := get(t, "http://"+admin+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return fams
}

// series returns the metric of family name whose labels include want
// (name=value pairs), failing if there is none.
func series(t testing.TB, fams map[string]*dto.MetricFamily, name string, want ...string) *dto.Metric {
	t.Helper()
	f := fams[name]
	if f == nil {
		t.Fatalf("no metric %s", name)
	}
next:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(want); i += 2 {
			if have[want[i]] != want[i+1] {
				continue next
			}
		}
		return m
	}
	t.Fatalf("no %s%v", name, want)
	return nil
}

func value(t testing.TB, fams map[string]*dto.MetricFamily, name string, want ...string) float64 {
	t.Helper()
	m := series(t, fams, name, want...)
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	t.Fatalf("%s%v is neither a counter nor a gauge", name, want)
	return 0
}

// histCount returns a histogram's count after checking that its buckets
// are cumulative and end at the count.
func histCount(t testing.TB, fams map[string]*dto.MetricFamily, name string, want ...string) uint64 {
	t.Helper()
	h := series(t, fams, name, want...).Histogram
	if h == nil {
		t.Fatalf("%s%v is not a histogram", name, want)
	}
	var prev uint64
	for _, b := range h.Bucket {
		if b.GetCumulativeCount() < prev {
			t.Fatalf("%s%v: buckets not cumulative: %v", name, want, h.Bucket)
		}
		prev = b.GetCumulativeCount()
	}
	if prev > h.GetSampleCount() {
		t.Fatalf("%s%v: last bucket %d above the count %d", name, want, prev, h.GetSampleCount())
	}
	return h.GetSampleCount()
}

// TestLatencyAndLoginMetrics drives every measured path once and reads
// each histogram and counter back from a real scrape: messages stored for
// an offline recipient (drain) and for an online one (push), SEND to
// SENT, the inbox's fsync, each kind of login and each kind of failure.
func TestLatencyAndLoginMetrics(t *testing.T) {
	s := startServer(t, testConfig(t))
	addr, stop, err := s.Admin("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	alice := register(t, s, "alice")
	bob := register(t, s, "bob")
	bobID := bob.Welcome.User
	bob.Close()
	for i := range 3 { // bob is offline: these wait for his drain
		alice.Send(bobID, []byte(fmt.Sprint("stored ", i)), true)
		next[*codec.Sent](t, alice)
	}
	bob = login(t, s, "bob")
	for range 3 {
		d := next[*codec.Deliver](t, bob)
		bob.Ack(d.Seq, true)
	}
	alice.Send(bobID, []byte("live"), true) // bob is caught up: pushed
	until[*codec.Sent](t, alice)            // past the receipts of the first three
	d := next[*codec.Deliver](t, bob)
	bob.Ack(d.Seq, true)
	// Once the acks have emptied bob's inbox, the resumed session has
	// nothing to drain: the drain count stays 3.
	waitFor(t, func() bool {
		n := 0
		s.inbox.Read(bobID, 0, 10, func(*offline.Entry) bool { n++; return true })
		return n == 0
	})
	resumed := dial(t, s)
	if _, err := resumed.Resume(ctx, bob.Welcome.Token); err != nil {
		t.Fatal(err)
	}

	failing := dial(t, s)
	for _, try := range []func() error{
		func() error { _, err := failing.Login(ctx, "nobody", "password1"); return err },
		func() error { _, err := failing.Login(ctx, "alice", "password1"); return err },
		func() error { _, err := failing.Register(ctx, "alice", "password1"); return err },
		func() error { _, err := failing.Resume(ctx, codec.Token{1}); return err },
	} {
		var e *codec.Error
		if !errors.As(try(), &e) {
			t.Fatal("a bad login was not refused")
		}
	}

	// A live session guessing its password fails like a login does.
	alice.WriteRaw((&codec.Password{Old: []byte("not alice's"), New: []byte("a new secret")}).Append(nil))
	if e := until[*codec.Error](t, alice); e.Code != codec.CodeWrongPassword {
		t.Fatalf("PASSWORD with a wrong old password: %v", e)
	}
	alice.WriteRaw((&codec.Password{Old: []byte("password-alice"), New: []byte("a new secret")}).Append(nil))
	until[*codec.Welcome](t, alice)

	fams := scrape(t, addr.String())
	for kind, want := range map[string]uint64{"register": 2, "login": 1, "resume": 1, "password": 1} {
		if n := histCount(t, fams, "chatd_login_seconds", "kind", kind); n != want {
			t.Errorf("chatd_login_seconds{kind=%q} count %d, want %d", kind, n, want)
		}
	}
	if n := histCount(t, fams, "chatd_send_to_sent_seconds"); n != 4 {
		t.Errorf("chatd_send_to_sent_seconds count %d, want 4", n)
	}
	if n := histCount(t, fams, "chatd_inbox_sync_seconds"); n == 0 {
		t.Error("chatd_inbox_sync_seconds counted no batch")
	}
	if n := histCount(t, fams, "chatd_delivery_seconds", "path", "drain"); n != 3 {
		t.Errorf("chatd_delivery_seconds{path=drain} count %d, want 3", n)
	}
	// The live message, and receipts pushed to alice.
	if n := histCount(t, fams, "chatd_delivery_seconds", "path", "push"); n == 0 {
		t.Error("chatd_delivery_seconds{path=push} counted nothing")
	}
	for reason, want := range map[string]float64{"unknown_user": 1, "wrong_password": 2, "name_taken": 1, "invalid_token": 1, "rate_limited": 0} {
		if v := value(t, fams, "chatd_login_failures_total", "reason", reason); v != want {
			t.Errorf("chatd_login_failures_total{reason=%q} = %v, want %v", reason, v, want)
		}
	}
	if v := value(t, fams, "chatd_build_info", "goversion", runtime.Version()); v != 1 {
		t.Errorf("chatd_build_info = %v", v)
	}
	if v := value(t, fams, "chatd_max_connections"); v != float64(s.cfg.MaxConns) || v == 0 {
		t.Errorf("chatd_max_connections = %v, want %d", v, s.cfg.MaxConns)
	}
	for _, state := range admissionStates {
		want := map[bool]float64{false: 0, true: 1}[state == "accepting"]
		if v := value(t, fams, "chatd_admission_state", "state", state); v != want {
			t.Errorf("chatd_admission_state{state=%q} = %v, want %v", state, v, want)
		}
	}
	// Pebble's readings are metrics of their own, counters as counters.
	if fams["chatd_pebble_compactions_total"].GetType() != dto.MetricType_COUNTER ||
		fams["chatd_pebble_l0_files"].GetType() != dto.MetricType_GAUGE || fams["chatd_pebble"] != nil {
		t.Error("Pebble readings not split into typed metrics")
	}
}

// TestStatsKeysAreMetricNames: every /stats key but time names a metric
// /metrics serves, so the two documents speak one language.
func TestStatsKeysAreMetricNames(t *testing.T) {
	s := startServer(t, testConfig(t))
	addr, stop, err := s.Admin("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	register(t, s, "alice")
	code, text := get(t, "http://"+addr.String()+"/stats")
	var doc map[string]any
	if err := json.Unmarshal([]byte(text), &doc); code != 200 || err != nil {
		t.Fatalf("/stats: %d %v", code, err)
	}
	fams := scrape(t, addr.String())
	for key := range doc {
		if key != "time" && fams[key] == nil {
			t.Errorf("/stats key %q is not a /metrics name", key)
		}
	}
	if doc["chatd_sessions"] != float64(1) || value(t, fams, "chatd_sessions") != 1 {
		t.Errorf("sessions: /stats %v, /metrics %v", doc["chatd_sessions"], value(t, fams, "chatd_sessions"))
	}
}

// TestAdmissionStateAtCapacity: at the connection capacity the state
// gauge says so, as /readyz does.
func TestAdmissionStateAtCapacity(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxConns = 1
	s := startServer(t, cfg)
	addr, stop, err := s.Admin("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	register(t, s, "alice")
	fams := scrape(t, addr.String())
	if v := value(t, fams, "chatd_admission_state", "state", "at_capacity"); v != 1 {
		t.Fatalf("chatd_admission_state{state=at_capacity} = %v at capacity", v)
	}
	if v := value(t, fams, "chatd_admission_state", "state", "accepting"); v != 0 {
		t.Fatalf("chatd_admission_state{state=accepting} = %v at capacity", v)
	}
	if code, _ := get(t, "http://"+addr.String()+"/readyz"); code != 503 {
		t.Fatalf("/readyz %d at capacity", code)
	}
}

// TestRateLimitedLoginCounted: a login refused by the per-source limit is
// a failure with reason rate_limited.
func TestRateLimitedLoginCounted(t *testing.T) {
	cfg := testConfig(t)
	cfg.LoginsPerSource = 1
	s := startServer(t, cfg)
	addr, stop, err := s.Admin("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	register(t, s, "alice")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var e *codec.Error
	if _, err := dial(t, s).Login(ctx, "alice", "password-alice"); !errors.As(err, &e) || e.Code != codec.CodeTooManyLogins {
		t.Fatalf("second attempt from one source: %v", err)
	}
	if v := value(t, scrape(t, addr.String()), "chatd_login_failures_total", "reason", "rate_limited"); v != 1 {
		t.Fatalf("rate_limited failures %v, want 1", v)
	}
}

// TestLoginFailureLogIsRateLimited: within one interval the first
// failLogged failures are logged one by one with the address; the rest
// are counted and reported by the first failure of the next interval.
func TestLoginFailureLogIsRateLimited(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	log := zap.New(core)
	var f loginFailures
	t0 := time.Unix(1_000_000*60, 0)
	for i := range failLogged + 15 {
		f.note(log, t0.Add(time.Duration(i)*time.Millisecond), kindLogin, failWrongPassword, "192.0.2.7:4242")
	}
	lines := logs.TakeAll()
	if len(lines) != failLogged {
		t.Fatalf("%d lines in one interval, want %d", len(lines), failLogged)
	}
	if c := lines[0].ContextMap(); c["remote"] != "192.0.2.7:4242" || c["reason"] != "wrong_password" || c["kind"] != "login" {
		t.Fatalf("line lacks the source, reason or kind: %v", c)
	}
	f.note(log, t0.Add(failLogEvery), kindResume, failInvalidToken, "192.0.2.8:1")
	lines = logs.TakeAll()
	if len(lines) != 2 || lines[0].ContextMap()["count"] != uint64(15) || lines[1].ContextMap()["reason"] != "invalid_token" {
		t.Fatalf("next interval: %v", lines)
	}
	if f.total[failWrongPassword].Load() != failLogged+15 || f.total[failInvalidToken].Load() != 1 {
		t.Fatal("failures miscounted")
	}
}

// TestHistBuckets: an observation lands in the first bucket whose bound
// it does not exceed (Prometheus's le), and the exposition is cumulative.
func TestHistBuckets(t *testing.T) {
	h := newHist([]time.Duration{time.Millisecond, 10 * time.Millisecond})
	for _, d := range []time.Duration{-time.Second, 0, time.Millisecond, time.Millisecond + 1, 10 * time.Millisecond, time.Hour} {
		h.Observe(d)
	}
	var m dto.Metric
	if err := histMetric(h, mSyncSeconds.d).Write(&m); err != nil {
		t.Fatal(err)
	}
	got := []uint64{}
	for _, b := range m.Histogram.Bucket {
		got = append(got, b.GetCumulativeCount())
	}
	if len(got) != 2 || got[0] != 3 || got[1] != 5 || m.Histogram.GetSampleCount() != 6 {
		t.Fatalf("buckets %v count %d, want [3 5] 6", got, m.Histogram.GetSampleCount())
	}
	if sum := m.Histogram.GetSampleSum(); sum < 3600.012 || sum > 3600.0121 {
		t.Fatalf("sum %v s", sum)
	}
}

// BenchmarkHistObserve is the per-message cost of a latency observation;
// BenchmarkMono that of the stamp on each SEND.
func BenchmarkHistObserve(b *testing.B) {
	h := newHist(deliveryBounds)
	b.RunParallel(func(pb *testing.PB) {
		d := time.Duration(0)
		for pb.Next() {
			d += 7 * time.Microsecond
			h.Observe(d % (20 * time.Millisecond))
		}
	})
}

func BenchmarkMono(b *testing.B) {
	var sink int64
	for b.Loop() {
		sink += mono()
	}
	_ = sink
}
