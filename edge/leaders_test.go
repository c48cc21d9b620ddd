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
// log's leader, and the group bucket's stream by the group's leader; and
// again after an owner left.
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
			if bad == "" && cs != nil {
				// The group's log is led by the group's leader.
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				st, err := js.Stream(ctx, "KV_"+jetstream.GroupBucket("edgetables"))
				cancel()
				switch {
				case err != nil:
					bad = fmt.Sprintf("group bucket's stream: %v", err)
				case st.CachedInfo().Cluster == nil || st.CachedInfo().Cluster.Leader != cs.Leader:
					bad = fmt.Sprintf("group bucket's stream led by %+v, not by the group's leader %s", st.CachedInfo().Cluster, cs.Leader)
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

	// The group's log moved to another node comes back to the leader.
	cs := c.live()[0].Manager().Cluster()
	leader, other := cs.Leader, ""
	for _, m := range cs.Members {
		if m.Node != leader {
			other = m.Node
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for moved := false; !moved; {
		if time.Now().After(deadline) {
			t.Fatalf("the group bucket's stream never moved to %s", other)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		body := fmt.Sprintf(`{"placement":{"preferred":%q}}`, other)
		_, _ = nc.RequestWithContext(ctx, "$JS.API.STREAM.LEADER.STEPDOWN.KV_"+jetstream.GroupBucket("edgetables"), []byte(body))
		st, err := js.Stream(ctx, "KV_"+jetstream.GroupBucket("edgetables"))
		cancel()
		moved = err == nil && st.CachedInfo().Cluster != nil && st.CachedInfo().Cluster.Leader == other
	}
	t.Logf("group bucket's stream moved to %s; the group's leader is %s", other, leader)
	check(3)

	// Every member's partitions from one node: each active and standby
	// once, the actives where the assignment puts them.
	code, body, _ := getJSON(t, c.nodes[0].HTTPAddr(), "/v1/cluster/partitions")
	nodes, _ := body["nodes"].(map[string]any)
	if code != 200 || len(nodes) != 3 {
		t.Fatalf("GET /v1/cluster/partitions = %d %v", code, body)
	}
	held := 0
	for node, v := range nodes {
		np := v.(map[string]any)
		if np["error"] != nil {
			t.Errorf("%s: %v", node, np["error"])
		}
		ps, _ := np["partitions"].([]any)
		held += len(ps)
	}
	if want := 6 * 2; held != want { // an active and a standby each
		t.Errorf("the members hold %d partitions in all, want %d: %v", held, want, body)
	}
	c.stop(2)
	c.waitAssigned()
	check(2)
}
