package edge

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgetables/edgetables/edge/builtin"
	"github.com/edgetables/edgetables/jetstream/jstest"
	"github.com/edgetables/edgetables/manager"
	"github.com/edgetables/edgetables/manager/port"
)

// TestDuplicateNameEmbedded: a node whose embedded server joins a cluster
// under a name a live node holds (a cloned device) stops with an error
// wrapping port.ErrDuplicateNode as soon as its routes meet, before its
// table manager starts, and the cluster keeps counting exactly.
func TestDuplicateNameEmbedded(t *testing.T) {
	const spec = "name=c,source=e.*,key=subject:2,agg=count"
	c := newTestCluster(t, 3, spec)
	c.publish(map[string]int{"a": 3, "b": 2}, func(k string) string { return "e." + k })
	c.expect("c", map[string]int{"a": 3, "b": 2})

	cfg := Config{Name: "n1", DataDir: filepath.Join(t.TempDir(), "dup"), NATSListen: "127.0.0.1:0",
		HTTPListen: "127.0.0.1:0", Partitions: 6, ClusterName: "test", ClusterListen: jstest.FreeAddr(t), Routes: c.routes,
		SessionTimeout: 2 * time.Second, Logger: c.logger(9)}
	parsed, err := builtin.ParseTableSpec(spec)
	if err != nil {
		t.Fatal(err)
	}
	table, agent, _ := builtin.Builtin(parsed)
	cfg.Tables, cfg.Agents = []manager.Collection{table}, []manager.Agent{agent}
	dup, err := NewNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err = dup.Run(ctx)
	if !errors.Is(err, port.ErrDuplicateNode) {
		t.Fatalf("the duplicate's Run: %v; want an error wrapping ErrDuplicateNode", err)
	}
	t.Logf("duplicate: %v", err)
	if dup.Manager() != nil {
		t.Errorf("the duplicate started its table manager before it was refused")
	}
	c.publish(map[string]int{"a": 1, "b": 1}, func(k string) string { return "e." + k })
	c.expect("c", map[string]int{"a": 4, "b": 3})
}
