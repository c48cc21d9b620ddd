package manager_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgetables/edgetables/manager"
	"github.com/edgetables/edgetables/manager/port"
)

// gatedChangelog holds every Append while closed, as a slow changelog
// would.
type gatedChangelog struct {
	port.Changelog
	mu   sync.Mutex
	gate chan struct{} // nil: open
	held atomic.Int32
}

func (c *gatedChangelog) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gate = make(chan struct{})
}

func (c *gatedChangelog) open() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gate != nil {
		close(c.gate)
		c.gate = nil
	}
}

func (c *gatedChangelog) Append(ctx context.Context, p int, expectLast uint64, recs []port.Record, marker port.CommitMarker) (uint64, error) {
	c.mu.Lock()
	gate := c.gate
	c.mu.Unlock()
	if gate != nil {
		c.held.Add(1)
		select {
		case <-gate:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	return c.Changelog.Append(ctx, p, expectLast, recs, marker)
}

// committed returns the committed source position of every partition.
func committed(m *manager.TableManager) map[int]uint64 {
	out := map[int]uint64{}
	for _, ps := range m.Status().Partitions {
		out[ps.Partition] = ps.SourceSeq
	}
	return out
}

// TestProcessingGoesOnWhileCommitsAreInFlight: while a commit's append is
// held, processing goes on into a fresh buffer; reads see the buffer and
// the held commit's writes, the committed positions do not move, and once
// the append goes through every event counts exactly once, also after a
// restart.
func TestProcessingGoesOnWhileCommitsAreInFlight(t *testing.T) {
	gc := &gatedChangelog{}
	h := newHarness(t, manager.Config{Partitions: 2, CommitInterval: 20 * time.Millisecond})
	h.wrapChangelog = func(c port.Changelog) port.Changelog { gc.Changelog = c; return gc }
	h.start()
	want := map[string]int64{}
	h.publishCounts(200, 10, want)
	h.waitCounts(want)
	old := map[string]int64{}
	for k, n := range want {
		old[k] = n
	}
	processed := h.m.Status().EventsProcessed

	gc.close()
	// Events arrive in several reads, so that the same keys are written
	// both in the held commits and after them.
	for range 5 {
		h.publishCounts(100, 10, want)
		time.Sleep(30 * time.Millisecond)
	}
	waitFor(t, 20*time.Second, "every event processed while commits are held", func() bool {
		return h.m.Status().EventsProcessed >= processed+500
	})
	if n := gc.held.Load(); n == 0 {
		t.Fatal("no append was held")
	}
	// Nothing was committed: the stores hold the old counts, and no
	// partition's position reached the last event (seq 700).
	for k, n := range old {
		if got, _, err := h.counter.Lookup(context.Background(), k); err != nil || got != n {
			t.Errorf("key %s: committed %d (%v) while every append was held; want %d", k, got, err, n)
		}
	}
	for p, seq := range committed(h.m) {
		if seq >= 700 {
			t.Errorf("partition %d committed up to %d while its appends were held", p, seq)
		}
	}
	gc.open()
	h.waitCounts(want)
	waitFor(t, 20*time.Second, "nothing uncommitted", func() bool {
		for _, ps := range h.m.Status().Partitions {
			if ps.Buffered != 0 {
				return false
			}
		}
		return true
	})
	must(t, h.stop())
	h.start()
	h.publishCounts(100, 10, want)
	h.waitCounts(want)
}

// TestStopWaitsForCommitInFlight: a manager stopped while a commit is held
// finishes it and commits the rest before Run returns; the restart counts
// nothing twice and loses nothing.
func TestStopWaitsForCommitInFlight(t *testing.T) {
	gc := &gatedChangelog{}
	h := newHarness(t, manager.Config{Partitions: 2, CommitInterval: 20 * time.Millisecond})
	h.wrapChangelog = func(c port.Changelog) port.Changelog { gc.Changelog = c; return gc }
	h.start()
	want := map[string]int64{}
	h.publishCounts(100, 10, want)
	h.waitCounts(want)

	gc.close()
	processed := h.m.Status().EventsProcessed
	h.publishCounts(300, 10, want)
	waitFor(t, 20*time.Second, "events processed while commits are held", func() bool {
		return h.m.Status().EventsProcessed >= processed+300 && gc.held.Load() > 0
	})
	stopped := make(chan error, 1)
	go func() { stopped <- h.stop() }()
	select {
	case err := <-stopped:
		t.Fatalf("Run returned (%v) while a commit was held", err)
	case <-time.After(200 * time.Millisecond):
	}
	gc.open()
	must(t, <-stopped)
	h.start()
	for _, rp := range h.m.RecoveryProgress() {
		if rp.Records != 0 {
			t.Errorf("partition %d replayed %d records after a clean stop; want its store up to date", rp.Partition, rp.Records)
		}
	}
	h.waitCounts(want)
	time.Sleep(200 * time.Millisecond) // redelivered events would be counted by now
	h.waitCounts(want)
}
