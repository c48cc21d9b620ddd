package edge

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/manager/assign"
	"github.com/edgetables/edgetables/manager/status"
)

// ghostMember joins the group of app as node name and claims, with every
// heartbeat, the partitions the assignment gives it as active at a source
// position far ahead, without ever processing them: a member whose belief
// about what it owns and how far it got is wrong. It stops when ctx ends,
// leaving the group.
func ghostMember(t *testing.T, ctx context.Context, url, app, name string) <-chan struct{} {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := natsjs.New(nc)
	g, err := jetstream.NewGroup(ctx, js, jetstream.GroupConfig{App: app, Node: name, SessionTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	views, err := g.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer nc.Close()
		tick := time.NewTicker(300 * time.Millisecond)
		defer tick.Stop()
		var a assign.Assignment
		for {
			st := status.MemberState{Node: name, Generation: a.Generation, Actives: a.ActivesOf(name), Positions: map[int]uint64{}}
			for _, p := range st.Actives {
				st.Positions[p] = 1 << 40
			}
			hctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = g.Heartbeat(hctx, st)
			cancel()
			select {
			case <-ctx.Done():
				lctx, cancel := context.WithTimeout(context.Background(), time.Second)
				_ = g.Leave(lctx)
				cancel()
				return
			case v, ok := <-views:
				if ok {
					a = v.Assignment
				}
			case <-tick.C:
			}
		}
	}()
	return done
}

// TestTrimGoesByTheChangelogs: a member claims partitions and positions it
// never processed. The source trim must not believe it: events of those
// partitions stay in the source until a real owner commits them, and when
// the partitions come back to a live node every event is counted.
func TestTrimGoesByTheChangelogs(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster with a ghost member")
	}
	c := newTestCluster(t, 3, "name=count,source=ev.*,key=subject:2,agg=count")
	n0 := c.nodes[0]
	want := map[string]int{}
	add := func(n int) {
		batch := map[string]int{}
		for i := 0; i < n; i++ {
			k := fmt.Sprintf("k%d", i%60)
			batch[k]++
			want[k]++
		}
		c.publish(batch, func(k string) string { return "ev." + k })
	}
	add(600)
	c.expect("count", want)

	ctx, stopGhost := context.WithCancel(context.Background())
	ghostDone := ghostMember(t, ctx, n0.ClientURL(), "edgetables", "ghost")
	defer func() { stopGhost(); <-ghostDone }()
	var ghostOwns []int
	waitFor(t, 20*time.Second, "the ghost assigned partitions and claiming them", func() bool {
		cs := n0.Manager().Cluster()
		if cs == nil || cs.Applied != cs.Generation {
			return false
		}
		for _, m := range cs.Members {
			if m.Node == "ghost" && len(m.Actives) > 0 && slices.Equal(m.Actives, cs.Assignment.ActivesOf("ghost")) {
				ghostOwns = m.Actives
				return true
			}
		}
		return false
	})
	add(600) // the ghost's partitions get events nobody processes
	time.Sleep(3 * time.Second)
	stopGhost()
	<-ghostDone
	c.waitAssigned()
	t.Logf("the ghost held partitions %v", ghostOwns)
	c.expect("count", want)
	for _, n := range c.live() {
		if gaps := n.Manager().Status().SourceGaps; gaps != 0 {
			t.Errorf("%s: SourceGaps = %d; want 0", n.cfg.Name, gaps)
		}
	}
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
