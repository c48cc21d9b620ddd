package edge

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/edgetables/edgetables/edge/builtin"
	"github.com/edgetables/edgetables/store"
)

// countingProvider counts the passes over every key of a table (Count and
// Scan calls) on the stores it opens.
type countingProvider struct {
	store.Provider
	passes *atomic.Int64
}

func (p countingProvider) Open(part int) (store.Store, error) {
	st, err := p.Provider.Open(part)
	if err != nil {
		return nil, err
	}
	return countingStore{Store: st, passes: p.passes}, nil
}

type countingStore struct {
	store.Store
	passes *atomic.Int64
}

func (s countingStore) Count(table string) (int, error) {
	s.passes.Add(1)
	return s.Store.Count(table)
}

func (s countingStore) Scan(table string, prefix, after []byte, fn func(k, v []byte) bool) error {
	s.passes.Add(1)
	return s.Store.Scan(table, prefix, after, fn)
}

// TestTableListingIsOnePass: GET /v1/tables counts each table's keys with
// one pass over each partition store, not a local count and then a
// cluster-wide one.
func TestTableListingIsOnePass(t *testing.T) {
	var passes atomic.Int64
	cfg := testConfig(t, t.TempDir(), "name=a,source=a.*,key=subject:2,agg=count", "name=b,source=b.*,key=subject:2,agg=count")
	cfg.wrapStores = func(p store.Provider) store.Provider { return countingProvider{Provider: p, passes: &passes} }
	n, _ := runNode(t, cfg)
	for i := range 20 {
		publish(t, n, fmt.Sprintf("a.k%d", i), "{}")
	}
	publish(t, n, "b.x", "{}")
	for i := range 20 { // partitions commit on their own: wait for each key
		waitValue(t, n, "a", fmt.Sprintf("k%d", i), "1")
	}
	waitValue(t, n, "b", "x", "1")

	before := passes.Load()
	code, body, _ := getJSON(t, n.HTTPAddr(), "/v1/tables")
	if code != http.StatusOK {
		t.Fatalf("GET /v1/tables: %d %v", code, body)
	}
	got := passes.Load() - before
	want := int64(2 * cfg.Partitions) // two tables, one pass per partition store
	if got != want {
		t.Errorf("GET /v1/tables made %d passes over the stores; want %d (one per table and partition)", got, want)
	}
	tables, _ := body["tables"].([]any)
	if len(tables) != 2 {
		t.Fatalf("tables: %v", body)
	}
	if keys := tables[0].(map[string]any)["keys"]; keys != float64(20) {
		t.Errorf("table a has %v keys; want 20", keys)
	}
}

// TestTableListingDuringARollingAdd: while one node of a cluster declares
// a table the other does not yet (a rolling change of the tables), GET
// /v1/tables on it still lists every table, the new one with keys_error
// instead of a cluster count, rather than failing whole with 404.
func TestTableListingDuringARollingAdd(t *testing.T) {
	c := newConfiguredCluster(t, 2, func(i int, cfg *Config) {
		if i != 1 {
			return
		}
		spec, err := builtin.ParseTableSpec("name=nt,source=e.*,key=subject:2,agg=count")
		if err != nil {
			t.Fatal(err)
		}
		table, agent, _ := builtin.Builtin(spec)
		cfg.Tables = append(cfg.Tables, table)
		cfg.Agents = append(cfg.Agents, agent)
	}, "name=c,source=e.*,key=subject:2,agg=count")
	code, body, _ := getJSON(t, c.nodes[1].HTTPAddr(), "/v1/tables")
	if code != http.StatusOK {
		t.Fatalf("GET /v1/tables on the node with the new table: %d %v", code, body)
	}
	tables, _ := body["tables"].([]any)
	byName := map[string]map[string]any{}
	for _, ti := range tables {
		m := ti.(map[string]any)
		byName[m["name"].(string)] = m
	}
	if m := byName["c"]; m == nil || m["keys_error"] != nil {
		t.Errorf("table c: %v, want listed with a count", m)
	}
	if m := byName["nt"]; m == nil || m["keys_error"] == nil || !strings.Contains(m["keys_error"].(string), "table not found") {
		t.Errorf("table nt: %v, want listed with keys_error naming the node without it", m)
	}
}
