package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/jetstream/jstest"
	"github.com/edgetables/edgetables/manager/assign"
	"github.com/edgetables/edgetables/manager/port"
	"github.com/edgetables/edgetables/manager/status"
)

// TestCluster runs a three-node cluster in this process: R3 streams are
// usable through any node, stay writable when one node (the partition's
// stream leader) stops, and the node catches up when it comes back.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	nodes := jstest.StartCluster(t, 3) // logs how long the meta leader took
	ctx := testCtx(t)

	cl, err := jetstream.NewChangelog(ctx, nodes[0].JS, jetstream.ChangelogConfig{App: app, Partitions: 2, Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jetstream.NewDeadLetters(ctx, nodes[0].JS, app, 3); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{cl.Stream(0), cl.Stream(1), jetstream.DeadLetterStream(app)} {
		info := streamInfo(t, nodes[1].JS, name)
		if info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
			t.Fatalf("stream %s: replicas %d, cluster %+v", name, info.Config.Replicas, info.Cluster)
		}
	}

	// Append through n2, replay through n3.
	cl2 := changelogOn(t, nodes[1].JS, 2)
	cl3 := changelogOn(t, nodes[2].JS, 2)
	recs := []port.Record{{Table: "t", Key: []byte("a"), Value: []byte("1")}, {Table: "t", Key: []byte("b"), Value: []byte("2")}}
	last := mustAppend(t, cl2, 0, 0, recs, port.CommitMarker{SourceSeq: 1, Node: "n2"})
	if got := replayAll(t, cl3, 0, 1, last, 10); len(got) != 3 || got[2].Commit == nil {
		t.Fatalf("replay through n3: %+v", got)
	}

	// Stop partition 0's stream leader; the others elect a new one and the
	// stream takes writes again.
	leader := streamInfo(t, nodes[0].JS, cl.Stream(0)).Cluster.Leader
	var down *jstest.Node
	var up []*jstest.Node
	for _, nd := range nodes {
		if nd.Name == leader {
			down = nd
		} else {
			up = append(up, nd)
		}
	}
	if down == nil {
		t.Fatalf("stream leader %q is not a node", leader)
	}
	down.Stop()
	stopped := time.Now()
	clUp := changelogOn(t, up[0].JS, 2)
	more := []port.Record{{Table: "t", Key: []byte("c"), Value: []byte("3")}}
	for {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := clUp.State(sctx, 0)
		cancel()
		if err == nil {
			actx, cancel := context.WithTimeout(ctx, 2*time.Second)
			last, err = clUp.Append(actx, 0, st.Last, more, port.CommitMarker{SourceSeq: 2, Node: up[0].Name})
			cancel()
			if err == nil {
				break
			}
		}
		if time.Since(stopped) > 30*time.Second {
			t.Fatalf("partition 0 not writable 30 s after its leader %s stopped: %v", leader, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("R3 stream writable again %v after its leader %s stopped", time.Since(stopped), leader)
	// a, b, c and the second marker (the first one was compacted away)
	if got := replayAll(t, changelogOn(t, up[1].JS, 2), 0, 1, last, 10); len(got) != 4 {
		t.Fatalf("replay after failover: %d entries, want 4", len(got))
	}

	// The node comes back under the same name, store and ports, and its
	// replica catches up: with another node stopped, the stream still has
	// its quorum and all its messages.
	down.Restart(t)
	deadline := time.Now().Add(30 * time.Second)
	for !down.Server.NATSServer().JetStreamIsStreamCurrent(server.DEFAULT_GLOBAL_ACCOUNT, cl.Stream(0)) {
		if time.Now().After(deadline) {
			t.Fatalf("restarted node %s: stream %s not current after 30 s", down.Name, cl.Stream(0))
		}
		time.Sleep(50 * time.Millisecond)
	}
	up[0].Stop()
	deadline = time.Now().Add(30 * time.Second)
	for {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		var n int
		err := changelogOn(t, up[1].JS, 2).Replay(rctx, 0, 1, last, 10, func(es []port.Entry) error { n += len(es); return nil })
		cancel()
		if err == nil && n == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replay with %s restarted and %s stopped: %d entries, %v", down.Name, up[0].Name, n, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestServerClusterConfig(t *testing.T) {
	for _, cfg := range []jetstream.ServerConfig{
		{Name: "n1", Routes: []string{"nats-route://127.0.0.1:6222"}},
		{ClusterListen: "127.0.0.1:0"},
		{Name: "n1", ClusterListen: "127.0.0.1"},
		{Name: "n1", ClusterListen: "127.0.0.1:0", Routes: []string{"http://127.0.0.1:6222"}},
		{Name: "n1", ClusterListen: "127.0.0.1:0", Routes: []string{"nats-route://127.0.0.1"}},
	} {
		cfg.Listen, cfg.StoreDir, cfg.Logger = "127.0.0.1:0", t.TempDir(), quiet
		if s, err := jetstream.StartServer(context.Background(), cfg); err == nil {
			s.Shutdown()
			t.Errorf("StartServer(%+v) succeeded", cfg)
		}
	}
}

// TestClusterGroup runs the group on an R3 bucket, one member per node:
// replicated streams report compare-and-set conflicts with another error
// code (10164), which must still map to lost campaigns and stale
// assignments.
func TestClusterGroup(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	skipUnderRace(t) // heartbeats and assignments are conditional writes to an R3 bucket
	nodes := jstest.StartCluster(t, 3)
	ctx := testCtx(t)
	var groups []*jetstream.Group
	for _, nd := range nodes {
		g, err := jetstream.NewGroup(ctx, nd.JS, jetstream.GroupConfig{App: app, Node: nd.Name, SessionTimeout: 2 * time.Second, Replicas: 3, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		groups = append(groups, g)
	}
	if info := streamInfo(t, nodes[0].JS, "KV_"+groups[0].Bucket()); info.Config.Replicas != 3 {
		t.Fatalf("bucket replicas %d", info.Config.Replicas)
	}
	views := watchGroup(t, groups[2])
	for _, g := range groups {
		if err := g.Heartbeat(ctx, status.MemberState{}); err != nil {
			t.Fatal(err)
		}
	}
	waitView(t, views, "three members", func(v port.GroupView) bool { return len(v.Members) == 3 })
	if n := campaignRace(t, groups); n != 1 {
		t.Fatalf("%d leaders", n)
	}
	rev, err := groups[0].PublishAssignment(ctx, assign.Assignment{Generation: 1}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := groups[1].PublishAssignment(ctx, assign.Assignment{Generation: 2}, rev-1); !errors.Is(err, port.ErrStaleAssignment) {
		t.Fatalf("stale update on R3: %v", err)
	}
	if _, err := groups[1].PublishAssignment(ctx, assign.Assignment{Generation: 2}, 0); !errors.Is(err, port.ErrStaleAssignment) {
		t.Fatalf("stale create on R3: %v", err)
	}
	waitView(t, views, "assignment", func(v port.GroupView) bool { return v.AssignmentRev == rev })

	// n3 stops while n1 and n2 keep renewing: n3's lease expires (through
	// a Raft proposal on the bucket's leader), and the watch over n3's
	// connection recovers on another node.
	views1 := watchGroup(t, groups[0])
	rctx, stopRenewing := context.WithCancel(ctx)
	renewing := make(chan struct{})
	var gen atomic.Uint64 // n1's generation; n2 stays at 6
	gen.Store(5)
	go func() { // as a member's heartbeat loop: short timeouts, errors ignored
		defer close(renewing)
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			for i, g := range groups[:2] {
				st := status.MemberState{Generation: gen.Load()}
				if i == 1 {
					st.Generation = 6
				}
				hctx, cancel := context.WithTimeout(rctx, time.Second)
				_ = g.Heartbeat(hctx, st)
				cancel()
			}
			select {
			case <-rctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	defer func() { stopRenewing(); <-renewing }()
	if err := groups[2].Heartbeat(ctx, status.MemberState{}); err != nil {
		t.Fatal(err)
	}
	waitView(t, views, "n1's generation 5", func(v port.GroupView) bool { return v.Members["n1"].Generation == 5 })
	last := time.Now()
	nodes[2].Stop()
	gen.Store(7)
	waitView(t, views, "n1's generation 7 through a recovered watch", func(v port.GroupView) bool { return v.Members["n1"].Generation == 7 })
	recovered := time.Since(last)
	t.Logf("watch over the stopped node's connection saw n1's next state %v after the node stopped", recovered)
	v := waitView(t, views1, "n3 expired", func(v port.GroupView) bool { _, ok := v.Members["n3"]; return !ok })
	took := time.Since(last)
	t.Logf("R3: member lease of %v seen expired %v after the last heartbeat", groups[0].SessionTimeout(), took)
	// The expiry cannot be seen before the watches over the stopped
	// node's connection recover (an election, seconds on a loaded
	// machine): it must be seen within the slack after the later of the
	// two.
	if limit := max(groups[0].SessionTimeout(), recovered) + expirySlack; took > limit {
		t.Errorf("R3 expiry seen after %v (limit %v)", took, limit)
	}
	if len(v.Members) != 2 || v.Members["n2"].Generation != 6 {
		t.Errorf("members %+v, want n1 and n2 (renewing)", v.Members)
	}

	// Queries between nodes: the subscription on n1 reaches n2 shortly.
	stop, err := jetstream.ServeQueries(nodes[0].Conn, app, "n1", func(_ context.Context, req []byte) []byte {
		return append([]byte("n1:"), req...)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := jetstream.Query(ctx, nodes[1].Conn, app, "n1", []byte("q"))
		if err == nil {
			if string(resp) != "n1:q" {
				t.Fatalf("answer %q", resp)
			}
			break
		}
		if !errors.Is(err, jetstream.ErrNoResponder) || time.Now().After(deadline) {
			t.Fatalf("query n1 from n2: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// campaignRace lets every group campaign at once and returns how many won.
func campaignRace(t *testing.T, groups []*jetstream.Group) int {
	t.Helper()
	won := make(chan bool, len(groups))
	errs := make(chan error, len(groups))
	for _, g := range groups {
		go func() {
			ok, err := g.Campaign(testCtx(t))
			won <- ok
			errs <- err
		}()
	}
	n := 0
	for range groups {
		if <-won {
			n++
		}
		if err := <-errs; err != nil {
			t.Fatalf("Campaign: %v", err)
		}
	}
	return n
}

func streamInfo(t testing.TB, js natsjs.JetStream, name string) *natsjs.StreamInfo {
	t.Helper()
	s, err := js.Stream(testCtx(t), name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	return s.CachedInfo()
}

// changelogOn opens the test app's changelog (R3) through js.
func changelogOn(t testing.TB, js natsjs.JetStream, parts int) *jetstream.Changelog {
	t.Helper()
	var cl *jetstream.Changelog
	var err error
	deadline := time.Now().Add(30 * time.Second)
	for {
		// An API request in flight when a leader stops gets no answer:
		// give up on it soon and ask again.
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		cl, err = jetstream.NewChangelog(ctx, js, jetstream.ChangelogConfig{App: app, Partitions: parts, Replicas: 3})
		cancel()
		if err == nil {
			return cl
		}
		if time.Now().After(deadline) {
			t.Fatal(fmt.Errorf("NewChangelog: %w", err))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
