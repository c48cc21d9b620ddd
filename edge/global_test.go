package edge

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/edgetables/edgetables/manager"
	"github.com/edgetables/edgetables/manager/codec"
)

// TestGlobalTableConvergence: three nodes write one global table at once,
// with compare-and-set increments of a shared key and plain writes of
// their own keys. Every node ends with every write and the exact total,
// reads it locally over HTTP, and a node that was down catches up.
func TestGlobalTableConvergence(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	skipUnderRace(t)
	const nodes, writes = 3, 20
	var (
		mu     sync.Mutex
		tables = make([]*manager.GlobalTable[string, int64], nodes)
	)
	table := func(i int) *manager.GlobalTable[string, int64] {
		mu.Lock()
		defer mu.Unlock()
		return tables[i]
	}
	c := newConfiguredCluster(t, nodes, func(i int, cfg *Config) {
		g := manager.NewGlobalTable(manager.TableConfig[string, int64]{
			Name: "devices", Keys: codec.String{}, Values: codec.Int64{}})
		mu.Lock()
		tables[i] = g
		mu.Unlock()
		cfg.Tables = append(cfg.Tables, g)
	}, "name=count,source=ev.*,key=subject:2,agg=count")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var wg sync.WaitGroup
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := table(i)
			for j := range writes {
				if err := g.Set(ctx, fmt.Sprintf("n%d-%d", i, j), int64(j)); err != nil {
					t.Errorf("node %d: Set: %v", i, err)
					return
				}
				if _, err := g.Update(ctx, "total", func(v int64, _ bool) (int64, error) { return v + 1, nil }); err != nil {
					t.Errorf("node %d: Update: %v", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	check := func(i int, total int64, keys int) {
		t.Helper()
		g := table(i)
		if err := g.Sync(ctx); err != nil {
			t.Fatalf("node %d: Sync: %v", i, err)
		}
		if v, err := g.Get("total"); err != nil || v != total {
			t.Fatalf("node %d: total = %d, %v; want %d", i, v, err, total)
		}
		if n, err := c.nodes[i].Manager().Count("devices"); err != nil || n != keys {
			t.Fatalf("node %d: %d keys, %v; want %d", i, n, err, keys)
		}
	}
	for i := range nodes {
		check(i, nodes*writes, nodes*writes+1)
	}
	// Reads over HTTP are answered locally: the whole table is here.
	code, body, _ := getJSON(t, c.nodes[1].HTTPAddr(), "/v1/tables/devices/keys/total")
	if code != http.StatusOK || body["value"] != float64(nodes*writes) {
		t.Fatalf("GET total on node 1 = %d %v", code, body)
	}
	code, body, _ = getJSON(t, c.nodes[2].HTTPAddr(), "/v1/tables")
	if code != http.StatusOK {
		t.Fatalf("GET /v1/tables = %d %v", code, body)
	}
	for _, ti := range body["tables"].([]any) {
		if m := ti.(map[string]any); m["name"] == "devices" && (m["keys"] != float64(nodes*writes+1) || m["global"] != true) {
			t.Fatalf("listing of devices = %v", m)
		}
	}

	// A node that is down when others write catches up when it returns.
	c.stop(2)
	for j := range writes {
		if err := table(0).Set(ctx, fmt.Sprintf("late-%d", j), 1); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := table(1).Update(ctx, "total", func(v int64, _ bool) (int64, error) { return v + 100, nil }); err != nil {
		t.Fatal(err)
	}
	c.start(2)
	c.waitAssigned()
	check(2, nodes*writes+100, nodes*writes+1+writes)
}
