package manager_test

import (
	"context"
	"strings"
	"testing"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/manager"
	"github.com/edgetables/edgetables/manager/codec"
	"github.com/edgetables/edgetables/manager/port"
)

// TestRebuildBehindFirstSequence: a store whose persisted offset is behind
// the changelog's first sequence (the range between was purged) is
// rebuilt, so that a delete it cannot replay does not leave the key behind.
func TestRebuildBehindFirstSequence(t *testing.T) {
	h := newHarness(t, manager.Config{Partitions: 1})
	h.start()
	want := map[string]int64{}
	h.publishCounts(50, 5, want)
	h.waitCounts(want)
	must(t, h.stop())

	// While the node is down, another writer deletes k0 and sets k1, and
	// the log is purged up to the record of k1: the tombstone of k0 is
	// gone, and the store's offset is behind the log's first sequence.
	ctx := context.Background()
	cl, err := jetstream.NewChangelog(ctx, h.js, jetstream.ChangelogConfig{App: h.app, Partitions: 1})
	must(t, err)
	st, err := cl.State(ctx, 0)
	must(t, err)
	del, err := cl.Append(ctx, 0, st.Last, []port.Record{{Table: "counts", Key: []byte("k0"), Delete: true}},
		port.CommitMarker{SourceSeq: 50, Node: "other"})
	must(t, err)
	v, err := codec.Int64{}.Encode(42)
	must(t, err)
	_, err = cl.Append(ctx, 0, del, []port.Record{{Table: "counts", Key: []byte("k1"), Value: v}},
		port.CommitMarker{SourceSeq: 50, Node: "other"})
	must(t, err)
	stream, err := h.js.Stream(ctx, jetstream.ChangelogStream(h.app, 0))
	must(t, err)
	must(t, stream.Purge(ctx, natsjs.WithPurgeSequence(del+1)))
	after, err := cl.State(ctx, 0)
	must(t, err)
	if after.First <= st.Last+1 {
		t.Fatalf("log first sequence %d after the purge, want beyond the store's offset %d + 1", after.First, st.Last)
	}

	h.start()
	rp := h.m.RecoveryProgress()
	if len(rp) != 1 || !rp[0].Rebuilt || !strings.Contains(rp[0].Reason, "first sequence") {
		t.Fatalf("recovery = %+v, want a store rebuilt because its offset is behind the log's first sequence", rp)
	}
	if _, found, err := h.counter.Lookup(ctx, "k0"); err != nil || found {
		t.Errorf("k0 found=%v err=%v: its delete was purged from the log, a rebuilt store must not have it", found, err)
	}
	if n, _, err := h.counter.Lookup(ctx, "k1"); err != nil || n != 42 {
		t.Errorf("k1 = %d (err %v), want 42 from the log", n, err)
	}
	if _, found, _ := h.counter.Lookup(ctx, "k2"); found {
		t.Error("k2 found: its records were purged from the log, the store must hold what the log holds")
	}
}
