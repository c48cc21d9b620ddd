package edge

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/jetstream"
)

// TestChangelogLeadersOffOwners: in a 3-node cluster, every partition's
// changelog ends up led by another node than the partition's active owner
// (its standby when it can), so the owner's death needs no election of the
// log's leader; and again after an owner left.
func TestChangelogLeadersOffOwners(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	c := newTestCluster(t, 3, "name=count,source=ev.*,key=subject:2,agg=count")
	nc, err := nats.Connect(c.nodes[0].ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	check := func(nodes int) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			bad := ""
			cs := c.live()[0].Manager().Cluster()
			for p := range c.live()[0].Manager().Partitions() {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				st, err := js.Stream(ctx, jetstream.ChangelogStream("edgetables", p))
				cancel()
				if err != nil || cs == nil || p >= len(cs.Assignment.Actives) {
					bad = "no state yet"
					break
				}
				info := st.CachedInfo()
				if info.Cluster == nil || info.Cluster.Leader == "" || info.Cluster.Leader == cs.Assignment.Actives[p] {
					bad = fmt.Sprintf("partition %d led by its owner %s", p, cs.Assignment.Actives[p])
					break
				}
			}
			if bad == "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d nodes: %s after 30 s", nodes, bad)
			}
			time.Sleep(200 * time.Millisecond)
		}
		var moves uint64
		for _, n := range c.live() {
			moves += n.Manager().Status().LeaderMoves
		}
		t.Logf("%d nodes: every changelog led by another node than its owner; %d leader moves so far", nodes, moves)
	}
	check(3)
	c.stop(2)
	c.waitAssigned()
	check(2)
}
