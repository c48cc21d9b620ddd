package manager_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/manager"
)

// runUnready runs a new manager in the background without waiting for it
// to be ready.
func (h *harness) runUnready() *manager.TableManager {
	h.t.Helper()
	h.m = h.newManager()
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan error, 1)
	m := h.m
	go func() { h.done <- m.Run(ctx) }()
	h.t.Cleanup(func() { h.stop() })
	return m
}

// countsThenLoseChangelog counts 100 events over 5 keys on one partition,
// waits for the source to be trimmed of them, stops, and deletes the
// partition's changelog stream: the store is then the only copy of the
// counts.
func countsThenLoseChangelog(t *testing.T, h *harness) map[string]int64 {
	want := map[string]int64{}
	h.start()
	h.publishCounts(100, 5, want)
	h.waitCounts(want)
	// The source is trimmed of them: they are nowhere else.
	waitFor(t, 10*time.Second, "source trimmed", func() bool {
		st, err := h.js.Stream(context.Background(), jetstream.SourceStream(h.app))
		return err == nil && st.CachedInfo().State.Msgs == 0
	})
	must(t, h.stop())
	must(t, h.js.DeleteStream(context.Background(), jetstream.ChangelogStream(h.app, 0)))
	return want
}

// TestChangelogDeletedStopsPartition: a changelog deleted under a store that
// holds counts is not taken as the truth (the store used to be rebuilt
// from the empty log: every count lost). The partition stops, says why,
// and keeps its store; restarted with ChangelogBehindReseed, the node
// writes the store back into the log and counts on exactly; the log then
// holds every count (a store rebuilt from it alone has them).
func TestChangelogDeletedStopsPartition(t *testing.T) {
	h := newHarness(t, manager.Config{Partitions: 1})
	want := countsThenLoseChangelog(t, h)

	m := h.runUnready()
	waitFor(t, 15*time.Second, "readiness names the stopped partition", func() bool {
		ready, reasons := m.Readiness()
		return !ready && len(reasons) > 0 && strings.Contains(reasons[0], "partition 0: changelog behind its store") &&
			strings.Contains(reasons[0], "--changelog-behind reseed")
	})
	if st := m.Status(); st.ChangelogBehind != 1 || len(st.Partitions) != 1 || st.Partitions[0].Behind == "" {
		t.Errorf("status: changelog_behind %d, partitions %+v; want 1 and the partition's reason", st.ChangelogBehind, st.Partitions)
	}
	time.Sleep(1500 * time.Millisecond) // a retry or two: still stopped
	if ready, _ := m.Readiness(); ready {
		t.Fatal("ready with a changelog behind its store")
	}
	must(t, h.stop())

	h.cfg.ChangelogBehind = manager.ChangelogBehindReseed
	h.start()
	h.waitCounts(want)
	h.publishCounts(50, 5, want)
	h.waitCounts(want)
	must(t, h.stop())

	// The log alone holds them now.
	must(t, os.RemoveAll(h.dir))
	h.cfg.ChangelogBehind = ""
	h.start()
	h.waitCounts(want)
	if rp := h.m.RecoveryProgress(); len(rp) != 1 || rp[0].Records < 5 {
		t.Errorf("recovery %+v: want the 5 keys replayed from the log", rp)
	}
}

// TestChangelogDeletedAccepted: with ChangelogBehindAccept the store goes
// back to the log's contents (here none) and counts from there.
func TestChangelogDeletedAccepted(t *testing.T) {
	h := newHarness(t, manager.Config{Partitions: 1, ChangelogBehind: manager.ChangelogBehindAccept})
	countsThenLoseChangelog(t, h)
	h.start()
	if _, found, err := h.counter.Lookup(context.Background(), "k0"); err != nil || found {
		t.Fatalf("k0 found=%v err=%v after accepting an empty changelog, want absent", found, err)
	}
	if st := h.m.Status(); st.ChangelogBehind != 1 {
		t.Errorf("changelog_behind = %d, want 1", st.ChangelogBehind)
	}
	want := map[string]int64{}
	h.publishCounts(10, 5, want)
	h.waitCounts(want)
}
