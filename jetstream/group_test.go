package jetstream_test

import (
	"context"
	"errors"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/jetstream/jstest"
	"github.com/edgetables/edgetables/manager/assign"
	"github.com/edgetables/edgetables/manager/port"
	"github.com/edgetables/edgetables/manager/status"
)

// expirySlack is how long after SessionTimeout an expired lease must be
// gone: the server expires messages on a one-second timer.
const expirySlack = 1500 * time.Millisecond

func newGroup(t testing.TB, js natsjs.JetStream, node string, timeout time.Duration) *jetstream.Group {
	t.Helper()
	g, err := jetstream.NewGroup(testCtx(t), js, jetstream.GroupConfig{App: app, Node: node, SessionTimeout: timeout, Logger: quiet})
	if err != nil {
		t.Fatalf("NewGroup(%s): %v", node, err)
	}
	return g
}

// watchGroup watches g until the test ends, then checks that the channel
// is closed.
func watchGroup(t testing.TB, g *jetstream.Group) <-chan port.GroupView {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := g.Watch(ctx)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		for range ch { // the goroutine closes ch as its last act
		}
	})
	return ch
}

// waitView returns the first view satisfying ok, failing after 15 s.
func waitView(t testing.TB, ch <-chan port.GroupView, what string, ok func(port.GroupView) bool) port.GroupView {
	t.Helper()
	timeout := time.NewTimer(15 * time.Second)
	defer timeout.Stop()
	var last port.GroupView
	for {
		select {
		case v, open := <-ch:
			if !open {
				t.Fatalf("view channel closed waiting for %s", what)
			}
			if ok(v) {
				return v
			}
			last = v
		case <-timeout.C:
			t.Fatalf("no view with %s after 15 s; last view %+v", what, last)
		}
	}
}

func heartbeat(t testing.TB, g *jetstream.Group, st status.MemberState) {
	t.Helper()
	if err := g.Heartbeat(testCtx(t), st); err != nil {
		t.Fatalf("Heartbeat: %v", err)
	}
}

func TestGroupConfig(t *testing.T) {
	_, _, js := jstest.Start(t)
	ctx := testCtx(t)
	for _, cfg := range []jetstream.GroupConfig{
		{App: "", Node: "n1"},
		{App: app, Node: ""},
		{App: app, Node: "a b"},
		{App: app, Node: "n.*"},
		{App: app, Node: ".n"},
		{App: app, Node: "n1", SessionTimeout: 500 * time.Millisecond},
	} {
		if _, err := jetstream.NewGroup(ctx, js, cfg); err == nil {
			t.Errorf("NewGroup(%+v) succeeded", cfg)
		}
	}
	for _, tt := range []struct{ in, want time.Duration }{{0, 5 * time.Second}, {time.Second, time.Second}, {1500 * time.Millisecond, 2 * time.Second}} {
		if got := newGroup(t, js, "host-1.example", tt.in).SessionTimeout(); got != tt.want {
			t.Errorf("SessionTimeout %v gives %v, want %v", tt.in, got, tt.want)
		}
	}
	kv, err := js.KeyValue(ctx, jetstream.GroupBucket(app))
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.History() != 1 || st.LimitMarkerTTL() <= 0 {
		t.Errorf("bucket history %d, limit marker TTL %v", st.History(), st.LimitMarkerTTL())
	}
	// Watching a bucket that is gone fails at once.
	g := newGroup(t, js, "n1", 0)
	if err := js.DeleteKeyValue(ctx, g.Bucket()); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := g.Watch(ctx); err == nil || time.Since(start) > time.Second {
		t.Errorf("Watch of a deleted bucket: %v after %v", err, time.Since(start))
	}
}

// TestGroupMembers: members heart-beat into the view; renewals that change
// nothing send no view; a changed state does; Leave removes a member at
// once.
func TestGroupMembers(t *testing.T) {
	srv, _, js := jstest.Start(t)
	nc2, err := srv.Connect("second")
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	js2, err := natsjs.New(nc2)
	if err != nil {
		t.Fatal(err)
	}
	g1 := newGroup(t, js, "n1", 5*time.Second)
	g2 := newGroup(t, js2, "n2", 5*time.Second)
	views := watchGroup(t, g1)
	if v := waitView(t, views, "the initial view", func(port.GroupView) bool { return true }); len(v.Members) != 0 || v.Leader != "" || v.AssignmentRev != 0 {
		t.Fatalf("initial view %+v", v)
	}
	heartbeat(t, g1, status.MemberState{Generation: 1, Actives: []int{0, 2}, Positions: map[int]uint64{0: 7}, HTTP: "127.0.0.1:8080"})
	heartbeat(t, g2, status.MemberState{Node: "ignored", Actives: []int{1}})
	v := waitView(t, views, "two members", func(v port.GroupView) bool { return len(v.Members) == 2 })
	if m := v.Members["n1"]; m.Node != "n1" || m.Generation != 1 || len(m.Actives) != 2 || m.Positions[0] != 7 || m.HTTP == "" {
		t.Errorf("n1's state %+v", m)
	}
	if m := v.Members["n2"]; m.Node != "n2" || len(m.Actives) != 1 {
		t.Errorf("n2's state %+v", m)
	}
	v.Members["n1"].Actives[0] = 99 // views are copies

	// A renewal with the same state changes nothing: no view. Then a
	// changed state arrives.
	heartbeat(t, g2, status.MemberState{Actives: []int{1}})
	heartbeat(t, g2, status.MemberState{Actives: []int{1, 3}})
	v = waitView(t, views, "n2's new state", func(port.GroupView) bool { return true })
	if got := v.Members["n2"].Actives; len(got) != 2 {
		t.Fatalf("first view after an unchanged renewal has n2 actives %v, want [1 3]", got)
	}
	if v.Members["n1"].Actives[0] != 0 {
		t.Error("a reader's change to a view leaked into the next view")
	}

	start := time.Now()
	if err := g2.Leave(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	waitView(t, views, "n2 gone", func(v port.GroupView) bool { _, ok := v.Members["n2"]; return !ok && len(v.Members) == 1 })
	if took := time.Since(start); took > time.Second {
		t.Errorf("Leave took %v to reach the view", took)
	}
	// Rejoining after Leave works.
	heartbeat(t, g2, status.MemberState{})
	waitView(t, views, "n2 back", func(v port.GroupView) bool { return len(v.Members) == 2 })
}

// TestGroupMemberExpiry: a member that stops heart-beating disappears from
// the view within SessionTimeout + 1.5 s of its last heartbeat, while a
// member that keeps renewing (each renewal a fresh TTL) stays.
func TestGroupMemberExpiry(t *testing.T) {
	_, _, js := jstest.Start(t)
	const timeout = 2 * time.Second
	g1 := newGroup(t, js, "n1", timeout)
	g2 := newGroup(t, js, "n2", timeout)
	views := watchGroup(t, g1)
	heartbeat(t, g1, status.MemberState{})
	heartbeat(t, g2, status.MemberState{})
	last := time.Now()
	waitView(t, views, "two members", func(v port.GroupView) bool { return len(v.Members) == 2 })

	ctx, cancel := context.WithCancel(context.Background())
	renewed := make(chan error, 1)
	go func() { // n1 renews every 500 ms
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				renewed <- nil
				return
			case <-tick.C:
				if err := g1.Heartbeat(ctx, status.MemberState{}); err != nil && ctx.Err() == nil {
					renewed <- err
					return
				}
			}
		}
	}()
	defer func() {
		cancel()
		if err := <-renewed; err != nil {
			t.Errorf("renewing n1: %v", err)
		}
	}()
	v := waitView(t, views, "n2 expired", func(v port.GroupView) bool { _, ok := v.Members["n2"]; return !ok })
	took := time.Since(last)
	t.Logf("member lease of %v seen expired %v after the last heartbeat", timeout, took)
	if took < timeout-100*time.Millisecond || took > timeout+expirySlack {
		t.Errorf("expiry seen after %v, want within [%v, %v]", took, timeout, timeout+expirySlack)
	}
	if _, ok := v.Members["n1"]; !ok {
		t.Fatal("n1 expired although it renews")
	}
	// n1 keeps renewing for two more session timeouts and never expires.
	hold := time.NewTimer(2 * timeout)
	defer hold.Stop()
	for {
		select {
		case v := <-views:
			if _, ok := v.Members["n1"]; !ok {
				t.Fatal("renewing member n1 expired")
			}
		case <-hold.C:
			return
		}
	}
}

// TestGroupLeader: of three members campaigning at once exactly one wins,
// every round; when the leader stops renewing another takes over within
// SessionTimeout + 1.5 s and the old leader learns it lost; Resign hands
// over at once; a restarted leader takes its own lease back.
func TestGroupLeader(t *testing.T) {
	_, _, js := jstest.Start(t)
	const timeout = 2 * time.Second
	groups := []*jetstream.Group{newGroup(t, js, "n1", timeout), newGroup(t, js, "n2", timeout), newGroup(t, js, "n3", timeout)}
	views := watchGroup(t, groups[0])
	for round := 0; round < 5; round++ {
		if n := campaignRace(t, groups); n != 1 {
			t.Fatalf("round %d: %d leaders", round, n)
		}
	}
	v := waitView(t, views, "a leader", func(v port.GroupView) bool { return v.Leader != "" })
	var leader *jetstream.Group
	var others []*jetstream.Group
	for i, g := range groups {
		if g.Node() == v.Leader {
			leader = groups[i]
		} else {
			others = append(others, g)
		}
	}
	if leader == nil {
		t.Fatalf("leader %q is not a member", v.Leader)
	}
	if ok, err := leader.Campaign(testCtx(t)); !ok || err != nil {
		t.Fatalf("leader's renewal: %v, %v", ok, err)
	}
	lastRenewal := time.Now()

	// The leader stops renewing; the others campaign every 100 ms.
	var next *jetstream.Group
	for next == nil {
		for _, g := range others {
			ok, err := g.Campaign(testCtx(t))
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				if next != nil {
					t.Fatalf("both %s and %s lead", next.Node(), g.Node())
				}
				next = g
			}
		}
		if time.Since(lastRenewal) > timeout+5*time.Second {
			t.Fatal("nobody took over")
		}
		if next == nil {
			time.Sleep(100 * time.Millisecond)
		}
	}
	took := time.Since(lastRenewal)
	t.Logf("leader lease of %v taken over %v after the last renewal", timeout, took)
	if took < timeout-100*time.Millisecond || took > timeout+expirySlack {
		t.Errorf("takeover after %v, want within [%v, %v]", took, timeout, timeout+expirySlack)
	}
	if ok, err := leader.Campaign(testCtx(t)); ok || err != nil {
		t.Fatalf("old leader's renewal: %v, %v; want false, nil", ok, err)
	}
	if err := leader.Resign(testCtx(t)); err != nil { // not the leader: nothing
		t.Fatal(err)
	}
	waitView(t, views, "the new leader", func(v port.GroupView) bool { return v.Leader == next.Node() })

	// Resign hands over at once.
	if err := next.Resign(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	waitView(t, views, "no leader", func(v port.GroupView) bool { return v.Leader == "" })
	if ok, err := leader.Campaign(testCtx(t)); !ok || err != nil {
		t.Fatalf("campaign after resign: %v, %v", ok, err)
	}

	// The leader restarts (a new Group, same node) and takes its lease
	// back without waiting for it to expire; the old instance has lost it.
	restarted := newGroup(t, js, leader.Node(), timeout)
	if ok, err := restarted.Campaign(testCtx(t)); !ok || err != nil {
		t.Fatalf("restarted leader's campaign: %v, %v", ok, err)
	}
	if ok, err := leader.Campaign(testCtx(t)); ok || err != nil {
		t.Fatalf("pre-restart instance's renewal: %v, %v; want false, nil", ok, err)
	}
}

// TestGroupAssignment: PublishAssignment is a compare-and-set on the
// assignment's revision.
func TestGroupAssignment(t *testing.T) {
	_, _, js := jstest.Start(t)
	g1 := newGroup(t, js, "n1", 0)
	g2 := newGroup(t, js, "n2", 0)
	views := watchGroup(t, g2)
	ctx := testCtx(t)
	a1 := assign.Assignment{Generation: 1, Partitions: 2, Actives: []string{"n1", "n2"}, Standbys: [][]string{{"n2"}, {"n1"}}}
	rev1, err := g1.PublishAssignment(ctx, a1, 0)
	if err != nil {
		t.Fatal(err)
	}
	a2 := assign.Assignment{Generation: 2, Partitions: 2, Actives: []string{"n2", "n1"}, Standbys: [][]string{{"n1"}, {"n2"}}}
	if _, err := g2.PublishAssignment(ctx, a2, 0); !errors.Is(err, port.ErrStaleAssignment) {
		t.Fatalf("second create: %v, want ErrStaleAssignment", err)
	}
	rev2, err := g2.PublishAssignment(ctx, a2, rev1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g1.PublishAssignment(ctx, a1, rev1); !errors.Is(err, port.ErrStaleAssignment) {
		t.Fatalf("update from an old revision: %v, want ErrStaleAssignment", err)
	}
	v := waitView(t, views, "generation 2", func(v port.GroupView) bool { return v.AssignmentRev == rev2 })
	if !v.Assignment.Equal(a2) {
		t.Fatalf("view's assignment %+v, want %+v", v.Assignment, a2)
	}
}

// TestGroupWatchLatest: a reader that does not read never blocks the
// watcher; when it reads it gets the latest view. Cancelling the context
// closes the channel.
func TestGroupWatchLatest(t *testing.T) {
	_, _, js := jstest.Start(t)
	g := newGroup(t, js, "n1", 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	views, err := g.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const n = 300 // changes while nobody reads
	for i := 1; i <= n; i++ {
		heartbeat(t, g, status.MemberState{Generation: uint64(i)})
	}
	waitView(t, views, "the last generation", func(v port.GroupView) bool { return v.Members["n1"].Generation == n })
	cancel()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case _, open := <-views:
			if !open {
				return
			}
		case <-timeout:
			t.Fatal("view channel not closed 5 s after cancel")
		}
	}
}

// TestGroupWatchStartsOver: when the watch's consumer disappears, the watch
// reads the bucket again on a new one and keeps sending views.
func TestGroupWatchStartsOver(t *testing.T) {
	_, _, js := jstest.Start(t)
	g := newGroup(t, js, "n1", 0)
	views := watchGroup(t, g)
	heartbeat(t, g, status.MemberState{Generation: 1})
	waitView(t, views, "generation 1", func(v port.GroupView) bool { return v.Members["n1"].Generation == 1 })
	ctx := testCtx(t)
	stream, err := js.Stream(ctx, "KV_"+g.Bucket())
	if err != nil {
		t.Fatal(err)
	}
	names := stream.ConsumerNames(ctx)
	n := 0
	for name := range names.Name() {
		if err := js.DeleteConsumer(ctx, "KV_"+g.Bucket(), name); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if names.Err() != nil || n != 1 {
		t.Fatalf("%d consumers (%v), want the watch's one", n, names.Err())
	}
	start := time.Now()
	heartbeat(t, g, status.MemberState{Generation: 2})
	waitView(t, views, "generation 2", func(v port.GroupView) bool { return v.Members["n1"].Generation == 2 })
	t.Logf("watch recovered %v after its consumer was deleted", time.Since(start))
}
