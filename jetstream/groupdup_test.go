package jetstream_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/jetstream/jstest"
	"github.com/edgetables/edgetables/manager/port"
	"github.com/edgetables/edgetables/manager/status"
)

// TestHeartbeatTellsInstancesApart: two live instances of one member name
// find each other within two heartbeats each and the later one gets
// ErrDuplicateNode; an instance restarted after its predecessor died (its
// lease still alive, but no longer renewed) takes the lease over.
func TestHeartbeatTellsInstancesApart(t *testing.T) {
	_, _, js := jstest.Start(t)
	ctx := context.Background()
	group := func() *jetstream.Group {
		g, err := jetstream.NewGroup(ctx, js, jetstream.GroupConfig{App: "a", Node: "dup", SessionTimeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	t0 := time.Now()
	older, newer := group(), group()
	s1 := status.MemberState{Instance: "i1", Started: t0}
	s2 := status.MemberState{Instance: "i2", Started: t0.Add(time.Second)}
	steps := []struct {
		g    *jetstream.Group
		st   status.MemberState
		dup  bool
		what string
	}{
		{older, s1, false, "the older instance joins"},
		{older, s1, false, "and renews"},
		{newer, s2, false, "the newer one writes over it once"},
		{older, s1, false, "the older one finds it and writes back"},
		{newer, s2, true, "the newer one finds the older one: duplicate"},
		{older, s1, false, "the older one goes on"},
	}
	for _, s := range steps {
		err := s.g.Heartbeat(ctx, s.st)
		if got := errors.Is(err, port.ErrDuplicateNode); got != s.dup || (!s.dup && err != nil) {
			t.Fatalf("%s: %v", s.what, err)
		}
	}
	// The older instance's lease goes (a leave; an expiry alike): its
	// next heartbeat writes it again.
	if err := older.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := older.Heartbeat(ctx, s1); err != nil {
			t.Fatalf("heartbeat %d after the lease went: %v", i, err)
		}
	}
	// The older instance dies; a restarted one takes its lease over at
	// once and keeps it.
	restarted := group()
	s3 := status.MemberState{Instance: "i3", Started: t0.Add(2 * time.Second)}
	for i := 0; i < 3; i++ {
		if err := restarted.Heartbeat(ctx, s3); err != nil {
			t.Fatalf("restarted instance, heartbeat %d: %v", i, err)
		}
	}
}
