package jetstream_test

import (
	"context"
	"testing"
	"time"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/jetstream/jstest"
	"github.com/edgetables/edgetables/manager/port"
	"github.com/edgetables/edgetables/manager/status"
)

// TestWatchCrashes: the group's leader stops, its routes close and its
// route port refuses connections; the others' crash watches remove its
// member and leader leases long before the leases (30 s) expire, and
// another member takes the lead.
func TestWatchCrashes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	skipUnderRace(t) // heartbeats are conditional writes to an R3 bucket
	nodes := jstest.StartCluster(t, 3)
	ctx := testCtx(t)
	var groups []*jetstream.Group
	for _, nd := range nodes {
		g, err := jetstream.NewGroup(ctx, nd.JS, jetstream.GroupConfig{App: app, Node: nd.Name, SessionTimeout: 30 * time.Second,
			Replicas: 3, Probe: nd.Server.ClusterAddr(), Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		if err := g.Heartbeat(ctx, status.MemberState{}); err != nil {
			t.Fatal(err)
		}
		groups = append(groups, g)
	}
	if ok, err := groups[2].Campaign(ctx); !ok || err != nil {
		t.Fatalf("n3 campaign: %v, %v", ok, err)
	}
	views := watchGroup(t, groups[0])
	waitView(t, views, "three members, n3 leading", func(v port.GroupView) bool { return len(v.Members) == 3 && v.Leader == "n3" })

	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{}, 2)
	for i := range 2 {
		go func() {
			defer func() { done <- struct{}{} }()
			jetstream.WatchCrashes(wctx, nodes[i].Server, groups[i], jetstream.CrashWatchConfig{Logger: quiet})
		}()
	}
	defer func() { stop(); <-done; <-done }()
	time.Sleep(300 * time.Millisecond) // the watches list the routes once

	stopped := time.Now()
	nodes[2].Stop()
	v := waitView(t, views, "n3's leases gone", func(v port.GroupView) bool {
		_, ok := v.Members["n3"]
		return !ok && v.Leader != "n3" && !v.Partial
	})
	took := time.Since(stopped)
	t.Logf("n3's leases removed %v after it stopped (lease %v)", took, groups[0].SessionTimeout())
	if took > 15*time.Second {
		t.Errorf("removed after %v: as late as an expiry", took)
	}
	if len(v.Members) != 2 {
		t.Errorf("view after the removal: members %d", len(v.Members))
	}
	if ok, err := groups[0].Campaign(ctx); !ok || err != nil {
		t.Fatalf("n1 campaign after n3 was removed: %v, %v", ok, err)
	}
}
