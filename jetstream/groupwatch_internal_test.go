package jetstream

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/manager/assign"
	"github.com/edgetables/edgetables/manager/status"
)

// noPlacement is a JetStream whose consumer creations go unanswered while
// blocked is set, as while JetStream elects a meta leader.
type noPlacement struct {
	natsjs.JetStream
	blocked atomic.Bool
}

func (d *noPlacement) CreateConsumer(ctx context.Context, stream string, cfg natsjs.ConsumerConfig) (natsjs.Consumer, error) {
	if d.blocked.Load() {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return d.JetStream.CreateConsumer(ctx, stream, cfg)
}

// TestGroupWatchReadsKeysWhileStartingOver: a watch that lost its consumer
// and cannot create another still delivers, within a second or so, a
// Partial view with the assignment published meanwhile and without the
// member whose lease was removed; once a consumer can be created again the
// complete view follows.
func TestGroupWatchReadsKeysWhileStartingOver(t *testing.T) {
	js := startJetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	blockable := &noPlacement{JetStream: js}
	watcher, err := NewGroup(ctx, blockable, GroupConfig{App: "poll", Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewGroup(ctx, js, GroupConfig{App: "poll", Node: "n2"})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range []*Group{watcher, other} {
		if err := g.Heartbeat(ctx, status.MemberState{Node: g.Node()}); err != nil {
			t.Fatal(err)
		}
	}
	first := assign.Assign(assign.Assignment{}, []string{"n1", "n2"}, 4, 1)
	rev, err := other.PublishAssignment(ctx, first, 0)
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	defer func() {
		stop()
		blockable.blocked.Store(false)
	}()
	views, err := watcher.Watch(wctx)
	if err != nil {
		t.Fatal(err)
	}
	next := func(what string, ok func(v viewSummary) bool) viewSummary {
		t.Helper()
		timeout := time.After(20 * time.Second)
		for {
			select {
			case v := <-views:
				s := summarize(v.Partial, v.Assignment.Generation, len(v.Members), v.Members["n2"].Node != "")
				if ok(s) {
					return s
				}
			case <-timeout:
				t.Fatalf("no view with %s", what)
			}
		}
	}
	next("both members and the first assignment", func(s viewSummary) bool {
		return !s.partial && s.generation == first.Generation && s.members == 2
	})

	// The watch loses its consumer and no new one can be created; n2
	// leaves and a new assignment is published meanwhile.
	blockable.blocked.Store(true)
	st, err := js.Stream(ctx, watcher.stream)
	if err != nil {
		t.Fatal(err)
	}
	infos := st.ListConsumers(ctx)
	for info := range infos.Info() {
		if err := js.DeleteConsumer(ctx, watcher.stream, info.Name); err != nil {
			t.Fatal(err)
		}
	}
	if err := other.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	second := assign.Assign(first, []string{"n1"}, 4, 1)
	if _, err := other.PublishAssignment(ctx, second, rev); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	got := next("the second assignment read key by key", func(s viewSummary) bool { return s.generation == second.Generation })
	if !got.partial || got.members != 1 || got.hasN2 {
		t.Fatalf("view while starting over: %+v; want a partial view with n1 alone", got)
	}
	t.Logf("partial view %v after the changes", time.Since(start).Round(time.Millisecond))

	blockable.blocked.Store(false)
	next("a complete view again", func(s viewSummary) bool { return !s.partial })
}

// viewSummary is what TestGroupWatchReadsKeysWhileStartingOver checks of a
// view.
type viewSummary struct {
	partial    bool
	generation uint64
	members    int
	hasN2      bool
}

func summarize(partial bool, generation uint64, members int, hasN2 bool) viewSummary {
	return viewSummary{partial, generation, members, hasN2}
}
