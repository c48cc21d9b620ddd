package edge

import (
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape fetches and parses a node's /metrics.
func scrape(t *testing.T, n *Node) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + n.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics = %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics is not the Prometheus text format: %v", err)
	}
	return fams
}

// value returns the value of the family's series whose labels include
// labels (name, value pairs); the test fails without one.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	if fams[name] == nil {
		t.Fatalf("metric %s missing", name)
	}
	v, ok := lookup(fams, name, labels...)
	if !ok {
		t.Fatalf("metric %s has no series with labels %v", name, labels)
	}
	return v
}

// lookup returns the value of the family's series whose labels include
// labels (name, value pairs), and whether there is one.
func lookup(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.GetLabel() {
				found = found || (lp.GetName() == labels[i] && lp.GetValue() == labels[i+1])
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func TestMetrics(t *testing.T) {
	n, _ := startNode(t, t.TempDir(), "name=count,source=s.*.t,key=subject:2,agg=count",
		"name=sum,source=s.*.t,key=subject:2,agg=sum,field=v")
	for i := 0; i < 20; i++ {
		publish(t, n, "s.k"+string(rune('a'+i%5))+".t", `{"v":1}`)
	}
	publish(t, n, "s.bad.t", `not json`) // refused by sum: a dead letter
	waitValue(t, n, "count", "ka", "4")
	waitValue(t, n, "count", "bad", "1")
	waitValue(t, n, "count", "ke", "4")
	deadline := time.Now().Add(10 * time.Second)
	for n.Manager().Status().DeadLetters["sum"] == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no dead letter counted")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Reads see a commit's writes while it is in flight: wait until one
	// has ended and been counted.
	for n.Manager().Status().Commits == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no commit ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
	fams := scrape(t, n)

	if v := value(t, fams, "edgetables_events_processed_total"); v < 20 || v > 41 {
		t.Errorf("events processed = %v, want 20 to 41 (21 events, two tables)", v)
	}
	if v := value(t, fams, "edgetables_changelog_records_written_total"); v < 6 {
		t.Errorf("changelog records = %v, want at least one per key of the count table", v)
	}
	commits := value(t, fams, "edgetables_commits_total")
	if commits < 1 {
		t.Errorf("commits = %v", commits)
	}
	h := fams["edgetables_commit_duration_seconds"].GetMetric()[0].GetHistogram()
	if float64(h.GetSampleCount()) != commits || h.GetSampleSum() <= 0 || len(h.GetBucket()) < 10 {
		t.Errorf("commit histogram: %d observations (commits %v), sum %v, %d buckets", h.GetSampleCount(), commits, h.GetSampleSum(), len(h.GetBucket()))
	}
	if v := value(t, fams, "edgetables_dead_letters_total", "agent", "sum"); v != 1 {
		t.Errorf("dead letters of sum = %v, want 1", v)
	}
	for reason, want := range map[string]float64{"agent": 1, "key": 0, "limit": 0} {
		if v := value(t, fams, "edgetables_dead_letters_by_reason_total", "reason", reason); v != want {
			t.Errorf("dead letters for reason %s = %v, want %v", reason, v, want)
		}
	}
	for _, reason := range []string{"fenced", "other"} {
		if v := value(t, fams, "edgetables_commit_failures_total", "reason", reason); v != 0 {
			t.Errorf("commit failures (%s) = %v, want 0", reason, v)
		}
	}
	if v := value(t, fams, "edgetables_partitions_taken_back_total"); v != 0 {
		t.Errorf("partitions taken back = %v, want 0", v)
	}
	if v := value(t, fams, "edgetables_source_pending_events"); v != 0 {
		t.Errorf("source events pending = %v, want 0 (every event read)", v)
	}
	for p := 0; p < 4; p++ {
		if v := value(t, fams, "edgetables_source_uncommitted_events", "partition", string(rune('0'+p))); v < 0 || v > 21 {
			t.Errorf("partition %d: uncommitted source events = %v, want 0 to 21", p, v)
		}
	}
	if v := value(t, fams, "edgetables_partitions", "state", "active"); v != 4 {
		t.Errorf("active partitions = %v, want 4", v)
	}
	if v := value(t, fams, "edgetables_partitions", "state", "recovering"); v != 0 {
		t.Errorf("recovering partitions = %v, want 0", v)
	}
	for p := range 4 {
		if v := value(t, fams, "edgetables_recovery_records_remaining", "partition", string(rune('0'+p))); v != 0 {
			t.Errorf("partition %d: recovery remaining = %v once ready", p, v)
		}
	}
	if v := value(t, fams, "edgetables_assignment_generation"); v != 1 {
		t.Errorf("generation = %v, want 1 alone", v)
	}
	if v := value(t, fams, "edgetables_rebalances_total"); v != 1 {
		t.Errorf("rebalances = %v, want 1 alone", v)
	}
	if value(t, fams, "edgetables_ready") != 1 {
		t.Error("ready = 0 on a ready node")
	}
	if fams["go_goroutines"] == nil || fams["process_resident_memory_bytes"] == nil {
		t.Error("Go runtime or process metrics missing")
	}
}
