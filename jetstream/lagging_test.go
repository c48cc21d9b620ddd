package jetstream_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/jetstream/jstest"
	"github.com/edgetables/edgetables/manager/assign"
	"github.com/edgetables/edgetables/manager/port"
)

// TestReplayFromLaggingReplica: a replay's ordered consumer is an R1
// consumer the server may place on any replica of the stream, a node that
// has just come back and is still catching up among them; that replica's
// messages say nothing is pending at its own end. A replay must still end
// only once every message up to until was delivered or is gone from the
// stream (the global replica took a replay cut short for a log whose tail
// had expired, and skipped the records it missed).
func TestReplayFromLaggingReplica(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	nodes := jstest.StartCluster(t, 3)
	ctx := testCtx(t)
	if _, err := jetstream.NewGlobalLog(ctx, nodes[0].JS, jetstream.GlobalConfig{App: app, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	// n3 misses many writes, then comes back and catches up while replays
	// run through it.
	nodes[2].Stop()
	nc, err := nats.Connect(jstest.ClientURLs(nodes[:2])[0])
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	const keys = 20000
	for i := range keys {
		if err := nc.Publish(jetstream.GlobalSubject(app, "t", []byte(fmt.Sprint(i))), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	gl1 := globalOn(t, nodes[0])
	waitLast(t, gl1, keys)
	nodes[2].Restart(t)
	gl3 := globalOn(t, nodes[2])
	short := 0
	for attempt := 0; attempt < 30; attempt++ {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := gl3.State(sctx)
		cancel()
		if err != nil {
			continue
		}
		var n, last uint64
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = gl3.Replay(rctx, 1, st.Last, 1000, func(es []port.Entry) error {
			n += uint64(len(es))
			last = es[len(es)-1].Seq
			return nil
		})
		cancel()
		if err != nil {
			t.Logf("attempt %d: %v", attempt, err)
			continue
		}
		if last != st.Last || n != keys {
			short++
			t.Errorf("attempt %d: replay to %d ended at %d after %d records, without an error", attempt, st.Last, last, n)
		}
	}
	t.Logf("%d short replays", short)
}

func globalOn(t *testing.T, nd *jstest.Node) *jetstream.GlobalLog {
	t.Helper()
	gl, err := jetstream.NewGlobalLog(testCtx(t), nd.JS, jetstream.GlobalConfig{App: app, Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	return gl
}

func waitLast(t *testing.T, gl *jetstream.GlobalLog, last uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := gl.State(testCtx(t))
		if err == nil && st.Last >= last {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("global log: %+v, %v; want last %d", st, err, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestGroupWatchFromLaggingReplica: the group watch's consumer may read a
// replica still catching up; its first view must still be the bucket's
// content as the stream's leader held it when the watch began, not an
// older one (a restarted node acted on its old assignment).
func TestGroupWatchFromLaggingReplica(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	skipUnderRace(t) // PublishAssignment is a conditional write to an R3 bucket
	nodes := jstest.StartCluster(t, 3)
	ctx := testCtx(t)
	g1, err := jetstream.NewGroup(ctx, nodes[0].JS, jetstream.GroupConfig{App: app, Node: "n1", SessionTimeout: 2 * time.Second, Replicas: 3, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	nodes[2].Stop()
	nc, err := nats.Connect(jstest.ClientURLs(nodes[:2])[0])
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for i := range 20000 {
		if err := nc.Publish(fmt.Sprintf("$KV.%s.filler.%d", g1.Bucket(), i), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	rev, err := g1.PublishAssignment(ctx, assign.Assignment{Generation: 7}, 0)
	if err != nil {
		t.Fatal(err)
	}
	nodes[2].Restart(t)
	g3, err := jetstream.NewGroup(ctx, nodes[2].JS, jetstream.GroupConfig{App: app, Node: "n3", SessionTimeout: 2 * time.Second, Replicas: 3, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	for attempt := range 10 {
		wctx, cancel := context.WithCancel(ctx)
		ch, err := g3.Watch(wctx)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		select {
		case v := <-ch:
			if v.AssignmentRev != rev || v.Assignment.Generation != 7 {
				t.Errorf("attempt %d: first view has assignment %d at revision %d; want 7 at %d", attempt, v.Assignment.Generation, v.AssignmentRev, rev)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("attempt %d: no view after 20 s", attempt)
		}
		cancel()
		for range ch {
		}
	}
}
