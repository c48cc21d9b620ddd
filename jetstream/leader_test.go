package jetstream_test

import (
	"slices"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/jetstream/jstest"
)

// TestMoveLeader: a partition's log led by one node moves to the
// preferred replica; asked of a node that does not lead it, or of a
// stream of one replica, nothing happens.
func TestMoveLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	nodes := jstest.StartCluster(t, 3)
	ctx := testCtx(t)
	cl, err := jetstream.NewChangelog(ctx, nodes[0].JS, jetstream.ChangelogConfig{App: app, Partitions: 1, Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	leader := waitLeader(t, nodes[0], cl.Stream(0))
	to := "n1"
	if leader == to {
		to = "n2"
	}
	var other string
	for _, nd := range nodes {
		if nd.Name != leader && nd.Name != to {
			other = nd.Name
		}
	}
	if moved, err := cl.MoveLeader(ctx, 0, other, to); err != nil || moved {
		t.Fatalf("MoveLeader from %s, which does not lead: %v, %v", other, moved, err)
	}
	// The preferred replica must be caught up, or the step-down goes to
	// any replica (a just-created stream's may still be catching up on a
	// loaded machine).
	waitFor(t, 10*time.Second, to+" a current replica", func() bool {
		st, err := nodes[0].JS.Stream(ctx, cl.Stream(0))
		if err != nil {
			return false
		}
		c := st.CachedInfo().Cluster
		return c != nil && slices.ContainsFunc(c.Replicas, func(r *natsjs.PeerInfo) bool { return r.Name == to && r.Current && !r.Offline })
	})
	if moved, err := cl.MoveLeader(ctx, 0, leader, to); err != nil || !moved {
		t.Fatalf("MoveLeader from %s to %s: %v, %v", leader, to, moved, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := waitLeader(t, nodes[0], cl.Stream(0))
		if got == to {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("leader %s after moving it from %s to %s", got, leader, to)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := cl.MoveLeader(ctx, 1, to, leader); err == nil {
		t.Fatal("MoveLeader of a partition that does not exist")
	}

	one, err := jetstream.NewChangelog(ctx, nodes[0].JS, jetstream.ChangelogConfig{App: "single", Partitions: 1, Replicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	l1 := waitLeader(t, nodes[0], one.Stream(0))
	if moved, err := one.MoveLeader(ctx, 0, l1, ""); err != nil || moved {
		t.Fatalf("MoveLeader of a stream of one replica: %v, %v", moved, err)
	}
}

// waitLeader returns the stream's leader once it has one.
func waitLeader(t *testing.T, nd *jstest.Node, stream string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if info := streamInfo(t, nd.JS, stream); info.Cluster != nil && info.Cluster.Leader != "" {
			return info.Cluster.Leader
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream %s has no leader", stream)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitFor polls cond until it holds, for up to d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %s", what, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
