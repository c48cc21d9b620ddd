package edge

import (
	"fmt"
	"testing"
	"time"

	"github.com/edgetables/edgetables/edge/builtin"
	"github.com/edgetables/edgetables/manager"
)

// TestRollingUpgradeAddsTable: three nodes run table a; they are upgraded
// one at a time to also declare table b. While only n0 declares b, n1 and
// n2 hold every partition as standbys and replay b's records without
// applying them (they do not know b). Once upgraded they must have b's
// values anyway, also as b's new owners after n0 stops, and count on from
// them. Their stores used to keep the offsets past b's skipped records: b
// read as empty on them, and their next writes of b started from nothing.
func TestRollingUpgradeAddsTable(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-node cluster")
	}
	const specA, specB = "name=a,source=a.*,key=subject:2,agg=count", "name=b,source=b.*,key=subject:2,agg=count"
	declaresB := make([]bool, 3) // read by configure at each start
	c := newConfiguredCluster(t, 3, func(i int, cfg *Config) {
		cfg.Standbys = 2 // every node holds every partition
		if declaresB[i] {
			spec, err := builtin.ParseTableSpec(specB)
			if err != nil {
				t.Error(err)
				return
			}
			table, agent, _ := builtin.Builtin(spec)
			cfg.Tables = append(cfg.Tables, table)
			cfg.Agents = append(cfg.Agents, agent)
		}
	}, specA)
	upgrade := func(i int) {
		c.stop(i)
		declaresB[i] = true
		c.start(i)
		c.waitAssigned()
	}
	upgrade(0)

	// b's events go to keys whose partitions n0 owns: the others would
	// skip them (no agent), as they skip any event of a table they do not
	// declare.
	m0 := c.nodes[0].Manager()
	want := map[string]int{}
	for i := 0; len(want) < 8 && i < 1000; i++ {
		k := fmt.Sprintf("k%d", i)
		if owner, ok := m0.Owner(manager.PartitionOf([]byte(k), m0.Partitions())); ok && owner == "n0" {
			want[k] = 5
		}
	}
	if len(want) == 0 {
		t.Fatal("n0 owns no partition")
	}
	c.publish(want, func(k string) string { return "b." + k })
	for k, v := range want {
		waitValue(t, c.nodes[0], "b", k, fmt.Sprint(v))
	}
	time.Sleep(500 * time.Millisecond) // the standbys follow b's records

	upgrade(1)
	upgrade(2)
	c.stop(0)
	c.waitAssigned()
	c.expect("b", want)
	more := map[string]int{}
	for k := range want {
		more[k] = 3
		want[k] += 3
	}
	c.publish(more, func(k string) string { return "b." + k })
	c.expect("b", want)
}
