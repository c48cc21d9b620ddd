package manager_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgetables/edgetables/manager"
)

// TestCrashBeforeBatchCommit crashes a commit before its atomic batch is
// committed (the records are published, the commit message not): with
// exactly-once nothing of the commit is stored and every event counts once
// after the restart.
func TestCrashBeforeBatchCommit(t *testing.T) {
	var crash, fired atomic.Bool
	h := newHarness(t, manager.Config{CommitInterval: 50 * time.Millisecond})
	h.atomic = true
	h.beforeCommit = func(p, batch int) error {
		if crash.Load() {
			fired.Store(true)
			return manager.ErrCrash
		}
		return nil
	}
	h.start()
	want := map[string]int64{}
	h.publishCounts(400, 10, want)
	h.waitCounts(want)

	crash.Store(true)
	h.publishCounts(250, 10, want)
	if err := h.wait(); !errors.Is(err, manager.ErrCrash) {
		t.Fatalf("Run = %v, want the simulated crash", err)
	}
	crash.Store(false)
	if !fired.Load() {
		t.Fatal("the failure point never fired")
	}
	h.start()
	h.waitCounts(want)
	time.Sleep(300 * time.Millisecond) // redelivered events would be counted by now
	h.waitCounts(want)
}

// TestCrashBeforeMarker crashes an at-least-once commit of 1,500 keys
// before its commit marker: its records go as one fast batch, stored as
// they arrive, so they are in the log without the marker. After the
// restart nothing is lost; the events of the keys whose records were
// stored are counted twice (the replayed record, then the redelivered
// event), the documented cost of at-least-once.
func TestCrashBeforeMarker(t *testing.T) {
	var crash, fired atomic.Bool
	h := newHarness(t, manager.Config{Partitions: 1, CommitInterval: 3 * time.Second, CommitIdle: -1})
	h.beforeCommit = func(p, batch int) error {
		if crash.Load() {
			fired.Store(true)
			return manager.ErrCrash
		}
		return nil
	}
	h.start()
	crash.Store(true)
	want := map[string]int64{}
	h.publishCounts(1500, 1500, want)
	if err := h.wait(); !errors.Is(err, manager.ErrCrash) {
		t.Fatalf("Run = %v, want the simulated crash", err)
	}
	crash.Store(false)
	if !fired.Load() {
		t.Fatal("the failure point never fired")
	}
	h.start()
	// The replayed records count every key once at once; the redelivered
	// events then count the stored ones again.
	var doubled, over int
	waitFor(t, 20*time.Second, "every key counted, some twice", func() bool {
		doubled, over = 0, 0
		for k, n := range want {
			got, _, err := h.counter.Lookup(context.Background(), k)
			if err != nil || got < n {
				return false
			}
			if got > n {
				doubled++
			}
			if got > 2*n {
				over++
			}
		}
		return doubled == len(want)
	})
	if over > 0 {
		t.Errorf("%d keys counted more than twice", over)
	}
	t.Logf("%d of %d keys counted twice after the crash before the marker", doubled, len(want))
}
