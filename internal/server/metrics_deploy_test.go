package server

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.yaml.in/yaml/v3"
)

// The operator files in deploy/ that query the metrics.
var (
	dashboardFile = filepath.Join("..", "..", "deploy", "grafana", "chatd-dashboard.json")
	alertsFile    = filepath.Join("..", "..", "deploy", "prometheus", "chatd-alerts.yml")
)

// seriesNames are the names a PromQL query may use for a scrape's
// families: a histogram's as its _bucket, _sum and _count series.
func seriesNames(fams map[string]*dto.MetricFamily) map[string]bool {
	names := map[string]bool{}
	for name, f := range fams {
		names[name] = true
		if f.GetType() == dto.MetricType_HISTOGRAM || f.GetType() == dto.MetricType_SUMMARY {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				names[name+suffix] = true
			}
		}
	}
	return names
}

// metricRef finds the metric names in a query: chatd's, the Go runtime's
// and the process's all start with one of these prefixes, which no label
// name, function or keyword does. Quoted label values are cut out first.
var (
	metricRef = regexp.MustCompile(`\b(?:chatd|go|process)_[a-zA-Z0-9_:]*`)
	quoted    = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
)

func metricsIn(query string) []string {
	return metricRef.FindAllString(quoted.ReplaceAllString(query, `""`), -1)
}

// liveNames starts a server and returns the series names its /metrics
// serves, and the scrape's text.
func liveNames(t *testing.T) (map[string]bool, string) {
	t.Helper()
	s := startServer(t, testConfig(t))
	addr, stop, err := s.Admin("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stop() })
	register(t, s, "alice")
	_, text := get(t, "http://"+addr.String()+"/metrics")
	names := seriesNames(scrape(t, addr.String()))
	// A single server serves no cluster metrics; a cluster node serves
	// these (TestClusterCrossNodeConversation checks that it does).
	for n := range clusterMetricNames() {
		names[n] = true
	}
	return names, text
}

// clusterMetricNames are the series names of the metrics only a cluster
// node serves, as describeCluster declares them.
func clusterMetricNames() map[string]bool {
	ch := make(chan *prometheus.Desc, 16)
	metrics{}.describeCluster(ch)
	close(ch)
	names := map[string]bool{}
	fq := regexp.MustCompile(`fqName: "([^"]+)"`)
	for d := range ch {
		n := fq.FindStringSubmatch(d.String())[1]
		names[n] = true
		if d == mHop {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				names[n+suffix] = true
			}
		}
	}
	return names
}

// dashboardQueries returns every PromQL string in a Grafana dashboard:
// the panels' target expressions and the template variables' queries.
func dashboardQueries(t *testing.T) (exprs, vars []string) {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			ID      int    `json:"id"`
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	ids := map[int]bool{}
	for _, p := range dash.Panels {
		if ids[p.ID] {
			t.Errorf("dashboard: panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("dashboard: panel %q queries nothing", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		if q, ok := v.Query.(map[string]any); ok {
			if s, ok := q["query"].(string); ok {
				vars = append(vars, s)
			}
		}
	}
	return exprs, vars
}

type alertRule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func alertRules(t *testing.T) []alertRule {
	t.Helper()
	b, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Groups []struct {
			Name  string      `yaml:"name"`
			Rules []alertRule `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true) // a misspelt key is an error, not a rule without it
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	var rules []alertRule
	for _, g := range doc.Groups {
		rules = append(rules, g.Rules...)
	}
	return rules
}

// TestDeployFilesQueryRealMetrics: every metric the Grafana dashboard and
// the alert rules query is one a running server serves, and between them
// they cover what operators are promised: the latency histograms, failed
// logins, capacity and admission, slow consumers, fsync, rejects, disk.
func TestDeployFilesQueryRealMetrics(t *testing.T) {
	live, _ := liveNames(t)

	exprs, vars := dashboardQueries(t)
	if len(exprs) < 20 {
		t.Fatalf("dashboard: only %d queries", len(exprs))
	}
	used := map[string]bool{}
	for _, q := range append(exprs, vars...) {
		names := metricsIn(q)
		if len(names) == 0 {
			t.Errorf("dashboard query names no metric: %s", q)
		}
		for _, n := range names {
			used[n] = true
			if !live[n] {
				t.Errorf("dashboard queries %s, which /metrics does not serve: %s", n, q)
			}
		}
	}
	for _, n := range []string{
		"chatd_inbox_sync_seconds_bucket", "chatd_send_to_sent_seconds_bucket", "chatd_delivery_seconds_bucket",
		"chatd_login_seconds_bucket", "chatd_login_failures_total", "chatd_max_connections", "chatd_connections",
		"chatd_admission_state", "chatd_build_info", "chatd_rejects_total", "chatd_storage_bytes", "chatd_pebble_l0_files",
		"chatd_cluster_nodes", "chatd_cluster_request_seconds_bucket", "chatd_cluster_directory_total",
	} {
		if !used[n] {
			t.Errorf("dashboard does not show %s", n)
		}
	}

	rules := alertRules(t)
	var all []string
	for _, r := range rules {
		if r.Alert == "" || r.Expr == "" {
			t.Errorf("rule %+v: no alert name or expr", r)
		}
		if !slices.Contains([]string{"warning", "critical"}, r.Labels["severity"]) || r.Annotations["summary"] == "" {
			t.Errorf("alert %s: needs severity warning or critical and a summary", r.Alert)
		}
		names := metricsIn(r.Expr)
		if len(names) == 0 {
			t.Errorf("alert %s names no metric: %s", r.Alert, r.Expr)
		}
		for _, n := range names {
			if !live[n] {
				t.Errorf("alert %s queries %s, which /metrics does not serve", r.Alert, n)
			}
		}
		all = append(all, r.Expr)
	}
	joined := strings.Join(all, "\n")
	for topic, want := range map[string]string{
		"slow consumers": `reason="slow_consumer"`, "fsync p99": "chatd_inbox_sync_seconds_bucket",
		"rejects": "chatd_rejects_total", "disk full": "chatd_storage_full", "disk low": `chatd_storage_bytes{metric="free"}`,
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("no alert on %s (an expr with %s)", topic, want)
		}
	}
}

// TestPromtool runs Prometheus's own checks when promtool is installed
// (Debian: apt-get install prometheus; .ci/run installs it): the alert
// rules must load, and a live scrape must pass its lint (names, units,
// _total on counters, help text).
func TestPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian package prometheus): alert rules and the scrape not checked by promtool; TestDeployFilesQueryRealMetrics still parses them")
	}
	if out, err := exec.Command(promtool, "check", "rules", alertsFile).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules %s: %v\n%s", alertsFile, err, out)
	}
	_, text := liveNames(t)
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestReadmeListsTheMetrics: README's "Watch it" step names every chatd
// metric a server serves, and nothing it does not (cluster metrics, served
// only by a node of a cluster, excepted).
func TestReadmeListsTheMetrics(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	start, end := strings.Index(text, "5. **Watch it**"), strings.Index(text, "6. **Restarts are graceful**")
	if start < 0 || end < start {
		t.Fatal(`README: no "Watch it" step`)
	}
	listed := map[string]bool{}
	for _, n := range regexp.MustCompile(`\bchatd_[a-z0-9_]+`).FindAllString(text[start:end], -1) {
		listed[n] = true
	}
	live, _ := liveNames(t)
	for n := range listed {
		if !live[n] && !strings.HasPrefix(n, "chatd_cluster_") {
			t.Errorf("README lists %s, which /metrics does not serve", n)
		}
	}
	for n := range live {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count")
		if strings.HasPrefix(n, "chatd_") && live[base] && !listed[base] {
			t.Errorf("README does not list %s", base)
		}
	}
}
