package edge

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.yaml.in/yaml/v3"

	"github.com/edgetables/edgetables/edge/builtin"
)

// Files of deploy/ that name metrics.
const (
	dashboardFile = "../deploy/grafana-dashboard.json"
	alertsFile    = "../deploy/prometheus-alerts.yml"
)

// syntheticMetrics are series Prometheus records itself, not served by a node.
var syntheticMetrics = map[string]bool{"up": true}

// TestMonitoringFiles parses the Grafana dashboard and the Prometheus alert
// rules of deploy/ and checks that every metric they name is served by
// real nodes: a two-node cluster (standbys, their lag) with a global table
// written once and a dead letter, an edge site and a hub node, scraped over
// HTTP.
func TestMonitoringFiles(t *testing.T) {
	exprs := map[string][]string{} // expression → where
	for where, e := range dashboardExprs(t) {
		exprs[e] = append(exprs[e], where)
	}
	for where, e := range alertExprs(t) {
		exprs[e] = append(exprs[e], where)
	}
	if len(exprs) < 20 {
		t.Fatalf("only %d expressions found in the dashboard and the rules", len(exprs))
	}

	served := servedMetrics(t)
	used := map[string]bool{}
	for e, where := range exprs {
		names := metricNames(e)
		if len(names) == 0 {
			t.Errorf("%s: no metric found in %q", where[0], e)
		}
		for _, name := range names {
			used[name] = true
			if !served[name] && !syntheticMetrics[name] {
				t.Errorf("%s: metric %s is not served by a node (expression %q)", where[0], name, e)
			}
		}
	}
	var unused []string
	for name := range served {
		if strings.HasPrefix(name, "edgetables_") && !used[name] && !strings.HasSuffix(name, "_sum") && !strings.HasSuffix(name, "_count") {
			unused = append(unused, name)
		}
	}
	sort.Strings(unused)
	t.Logf("edgetables metrics used by neither file: %v", unused)
}

// dashboardExprs returns the queries of the Grafana dashboard, by panel.
func dashboardExprs(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID    string `json:"uid"`
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
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.UID == "" {
		t.Errorf("%s: no uid", dashboardFile)
	}
	out := map[string]string{}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("%s: panel id %d used twice", dashboardFile, p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s: panel %q has no query", dashboardFile, p.Title)
		}
		for i, tg := range p.Targets {
			out[fmt.Sprintf("dashboard panel %q query %d", p.Title, i)] = tg.Expr
		}
	}
	labelValues := regexp.MustCompile(`^label_values\(([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,`)
	for _, v := range d.Templating.List {
		if m := labelValues.FindStringSubmatch(v.Definition); m != nil {
			out["dashboard variable "+v.Name] = m[1]
		}
	}
	return out
}

// alertExprs returns the expressions of the alert rules, by alert.
func alertExprs(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true) // a misspelt field of a rule is an error
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	out := map[string]string{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			where := "alert " + r.Alert
			switch {
			case r.Alert == "" || r.Expr == "":
				t.Errorf("%s: a rule without alert or expr: %+v", alertsFile, r)
			case !slices.Contains([]string{"critical", "warning", "info"}, r.Labels["severity"]):
				t.Errorf("%s: %s: severity %q", alertsFile, where, r.Labels["severity"])
			case r.Annotations["summary"] == "":
				t.Errorf("%s: %s: no summary", alertsFile, where)
			}
			if r.For != "" {
				if _, err := time.ParseDuration(r.For); err != nil {
					t.Errorf("%s: %s: for %q: %v", alertsFile, where, r.For, err)
				}
			}
			if _, dup := out[where]; dup {
				t.Errorf("%s: %s defined twice", alertsFile, where)
			}
			out[where] = r.Expr
		}
	}
	return out
}

var (
	promStrings  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	promMatchers = regexp.MustCompile(`\{[^}]*\}`)
	promRanges   = regexp.MustCompile(`\[[^\]]*\]`)
	promGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promIdent    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	promKeywords = map[string]bool{"and": true, "or": true, "unless": true, "by": true, "without": true, "on": true,
		"ignoring": true, "group_left": true, "group_right": true, "bool": true, "offset": true}
)

// metricNames returns the metric names a PromQL expression (or a Grafana
// query, with its $variables) selects: the identifiers that are not
// function names, keywords, labels or parts of numbers.
func metricNames(expr string) []string {
	e := promStrings.ReplaceAllString(expr, `""`)
	e = promMatchers.ReplaceAllString(e, " ")
	e = promRanges.ReplaceAllString(e, " ")
	e = promGrouping.ReplaceAllString(e, " ")
	var out []string
	for _, loc := range promIdent.FindAllStringIndex(e, -1) {
		word := e[loc[0]:loc[1]]
		if loc[0] > 0 && strings.ContainsAny(e[loc[0]-1:loc[0]], "$.0123456789") {
			continue // a variable, or the exponent of a number
		}
		if rest := strings.TrimLeft(e[loc[1]:], " \t\n"); strings.HasPrefix(rest, "(") || promKeywords[word] {
			continue // a function or a keyword
		}
		out = append(out, word)
	}
	return out
}

func TestMetricNames(t *testing.T) {
	cases := map[string][]string{
		`up{job="edgetables"} == 0`: {"up"},
		`histogram_quantile(0.99, sum by (le, instance) (rate(edgetables_commit_duration_seconds_bucket{instance=~"$instance"}[$__rate_interval])))`: {"edgetables_commit_duration_seconds_bucket"},
		"a > 0\n  and on (instance, job, partition)\ndelta(b[10m]) >= 0":                                                                             {"a", "b"},
		`go_gc_gomemlimit_bytes < 1e15`:                          {"go_gc_gomemlimit_bytes"},
		`predict_linear(x[6h], 24 * 3600) < 0`:                   {"x"},
		`process_resident_memory_bytes > 0.9 * go_goroutines`:    {"process_resident_memory_bytes", "go_goroutines"},
		`sum by (instance, reason) (increase(c_total[15m])) > 0`: {"c_total"},
	}
	for expr, want := range cases {
		if got := metricNames(expr); !slices.Equal(got, want) {
			t.Errorf("%q: %v, want %v", expr, got, want)
		}
	}
}

// servedMetrics runs a two-node cluster with a count table, a sum table
// and a global table, writes the global table once, makes one dead letter,
// starts an edge site of a hub and a hub node, and returns the sample names
// the nodes serve on /metrics.
func servedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	c := newConfiguredCluster(t, 2, func(i int, cfg *Config) {
		g, err := builtin.GlobalJSONTable("sites")
		if err != nil {
			t.Error(err)
			return
		}
		cfg.Tables = append(cfg.Tables, g)
		cfg.Partitions = 2
	}, "name=count,source=ev.*,key=subject:2,agg=count", "name=sum,source=ev.*,key=subject:2,agg=sum,field=v")
	c.publish(map[string]int{"a": 3, "b": 2}, func(k string) string { return "ev." + k })
	c.expect("count", map[string]int{"a": 3, "b": 2})
	n0 := c.live()[0]
	req, err := http.NewRequest(http.MethodPut, "http://"+n0.HTTPAddr()+"/v1/tables/sites/keys/s1", strings.NewReader(`{"city":"Lyon"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("PUT a global key: HTTP %d", resp.StatusCode)
	}
	publish(t, n0, "ev.bad", "not json") // refused by sum: a dead letter
	deadline := time.Now().Add(20 * time.Second)
	for {
		dead := uint64(0)
		for _, n := range c.live() {
			dead += n.Manager().Status().DeadLetters["sum"]
		}
		if dead > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no dead letter counted")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// An edge site and a hub node sourcing it, for the edge metrics.
	hub := startTestHub(t)
	site, _ := runNode(t, siteConfig(t, t.TempDir(), "s1", fmt.Sprintf("nats-leaf://127.0.0.1:%d", hub.leafPort)))
	hubNode, _ := runNode(t, hubNodeConfig(t, hub, "s1"))

	served := map[string]bool{}
	for _, n := range append(c.live(), site, hubNode) {
		for name, f := range scrape(t, n) {
			switch f.GetType() {
			case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
				served[name+"_bucket"], served[name+"_sum"], served[name+"_count"] = true, true, true
			case dto.MetricType_SUMMARY:
				served[name], served[name+"_sum"], served[name+"_count"] = true, true, true
			default:
				served[name] = true
			}
		}
	}
	for _, name := range []string{"edgetables_standby_lag_records", "edgetables_global_lag_records", "edgetables_dead_letters_by_reason_total", "edgetables_data_dir_free_bytes",
		"edgetables_leaf_connections", "edgetables_source_full", "edgetables_site_lag_events", "edgetables_site_changelog_lag_records"} {
		if !served[name] {
			t.Fatalf("the cluster does not serve %s: the test's setup does not show every metric", name)
		}
	}
	return served
}

// TestDiskMetrics: the data directory's file system as statfs sees it.
func TestDiskMetrics(t *testing.T) {
	n, _ := startNode(t, t.TempDir(), "name=count,source=s.*.t,key=subject:2,agg=count")
	fams := scrape(t, n)
	free, size := value(t, fams, "edgetables_data_dir_free_bytes"), value(t, fams, "edgetables_data_dir_size_bytes")
	if size <= 0 || free <= 0 || free > size {
		t.Errorf("data dir free %v bytes of %v", free, size)
	}
	d := newDiskMetrics("/nonexistent/dir")
	if err := testCollectError(d); err == nil {
		t.Error("a data directory that does not exist: no error")
	}
}

// testCollectError returns the error of the first invalid metric c collects.
func testCollectError(c interface {
	Collect(chan<- prometheus.Metric)
}) error {
	ch := make(chan prometheus.Metric, 4)
	c.Collect(ch)
	close(ch)
	for m := range ch {
		var out dto.Metric
		if err := m.Write(&out); err != nil {
			return err
		}
	}
	return nil
}
