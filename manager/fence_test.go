package manager_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/manager"
	"github.com/edgetables/edgetables/manager/codec"
	"github.com/edgetables/edgetables/manager/port"
	"github.com/edgetables/edgetables/manager/status"
)

// intruder appends one record and a commit marker of generation gen to
// partition p's changelog, after whatever the log holds: it fences the
// partition's current writer.
func (h *harness) intruder(p int, gen uint64, key string, value int64) {
	h.t.Helper()
	h.intruderAt(p, gen, key, value, 0)
}

// intruderAt is intruder with a marker carrying source position source; it
// returns the marker's sequence.
func (h *harness) intruderAt(p int, gen uint64, key string, value int64, source uint64) uint64 {
	h.t.Helper()
	ctx := context.Background()
	cl, err := jetstream.NewChangelog(ctx, h.js, jetstream.ChangelogConfig{App: h.app, Partitions: h.m.Partitions()})
	must(h.t, err)
	st, err := cl.State(ctx, p)
	must(h.t, err)
	v, err := codec.Int64{}.Encode(value)
	must(h.t, err)
	rec := port.Record{Table: "counts", Key: []byte(key), Value: v}
	last, err := cl.Append(ctx, p, st.Last, []port.Record{rec}, port.CommitMarker{SourceSeq: source, Node: "intruder", Generation: gen})
	if err != nil {
		h.t.Fatalf("intruder append: %v", err)
	}
	return last
}

// keyIn returns a key of the counts table in partition p.
func keyIn(p, partitions int, prefix string) string {
	for i := 0; ; i++ {
		k := fmt.Sprintf("%s%d", prefix, i)
		if manager.PartitionOf([]byte(k), partitions) == p {
			return k
		}
	}
}

func partitionState(m *manager.TableManager, p int) status.PartitionState {
	for _, ps := range m.Status().Partitions {
		if ps.Partition == p {
			return ps.State
		}
	}
	return ""
}

// TestFencedPartitionIsTakenBack: another writer of an older generation
// (a paused previous owner, or a late write of this node's own) appends to
// an owned partition's changelog. The owner's next commit is fenced; it
// replays what the other wrote, takes the log over again and counts every
// event once.
func TestFencedPartitionIsTakenBack(t *testing.T) {
	h := newHarness(t, manager.Config{Partitions: 2, CommitInterval: 20 * time.Millisecond})
	h.start()
	want := map[string]int64{}
	h.publishCounts(200, 10, want)
	h.waitCounts(want)

	other := keyIn(0, 2, "intruded")
	h.intruder(0, 0, other, 42)
	h.publishCounts(200, 10, want) // both partitions get events: partition 0 is fenced
	waitFor(t, 20*time.Second, "partition 0 fenced and active again", func() bool {
		return h.m.Status().Partitions[0].Recovery != nil && h.m.Status().Partitions[0].Recovery.Records > 0 &&
			partitionState(h.m, 0) == status.StateActive
	})
	h.waitCounts(want)
	got, ok, err := h.counter.Lookup(context.Background(), other)
	if err != nil || !ok || got != 42 {
		t.Errorf("the other writer's record: got %d, %v, %v; want 42 replayed into the store", got, ok, err)
	}
	h.publishCounts(100, 10, want)
	h.waitCounts(want)
	if st := h.m.Status(); st.CommitsFenced == 0 || st.TakenBack == 0 {
		t.Errorf("status: %d commits fenced, %d partitions taken back; want both counted", st.CommitsFenced, st.TakenBack)
	}
}

// TestFencedByNewerOwnerWaits: a writer of a newer generation owns the
// log by an assignment this node has not seen; the node does not fence it
// back, and the partition stays fenced (unserved) while the other one
// keeps processing.
func TestFencedByNewerOwnerWaits(t *testing.T) {
	h := newHarness(t, manager.Config{Partitions: 2, CommitInterval: 20 * time.Millisecond})
	h.start()
	want := map[string]int64{}
	h.publishCounts(200, 10, want)
	h.waitCounts(want)

	h.intruder(0, 99, keyIn(0, 2, "newer"), 7)
	h.publishCounts(200, 10, want)
	waitFor(t, 20*time.Second, "partition 0 fenced", func() bool { return partitionState(h.m, 0) == status.StateFenced })
	time.Sleep(500 * time.Millisecond) // a retake would have happened by now
	if s := partitionState(h.m, 0); s != status.StateFenced {
		t.Fatalf("partition 0 is %s; want it to stay fenced by the newer owner", s)
	}
	if s := partitionState(h.m, 1); s != status.StateActive {
		t.Errorf("partition 1 is %s; the other partition must go on", s)
	}
	if ready, reasons := h.m.Readiness(); ready || len(reasons) != 1 || !strings.Contains(reasons[0], "partition 0: fenced by a newer owner") {
		t.Errorf("Readiness() = %v, %q; want not ready because partition 0 is fenced", ready, reasons)
	}
}
