package manager_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgetables/edgetables/manager"
	"github.com/edgetables/edgetables/manager/port"
	"github.com/edgetables/edgetables/store"
)

// hookedStores opens stores whose Apply of replayed records (a batch of
// mutations with a changelog offset) calls before first: an error from it
// is returned instead of applying the batch.
type hookedStores struct {
	store.Provider
	before func(b store.Batch) error
	wrap   func(hookedStore) store.Store // if set, what Open returns
	mu     sync.Mutex
	last   store.Store // the store last opened
}

func (h *hookedStores) Open(p int) (store.Store, error) {
	s, err := h.Provider.Open(p)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	h.last = s
	h.mu.Unlock()
	if h.wrap != nil {
		return h.wrap(hookedStore{Store: s, h: h}), nil
	}
	return hookedStore{Store: s, h: h}, nil
}

func (h *hookedStores) opened() store.Store {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last
}

type hookedStore struct {
	store.Store
	h *hookedStores
}

func (s hookedStore) Apply(b store.Batch) error {
	if len(b.Mutations) > 0 && b.Offsets.Changelog > 0 {
		if err := s.h.before(b); err != nil {
			return err
		}
	}
	return s.Store.Apply(b)
}

// countingReplay is a changelog that counts the batches its Replay reads
// and calls read (if set) with each before it passes it on.
type countingReplay struct {
	port.Changelog
	batches atomic.Int64
	read    func()
}

func (c *countingReplay) Replay(ctx context.Context, p int, from, until uint64, batchSize int, fn func([]port.Entry) error) error {
	return c.Changelog.Replay(ctx, p, from, until, batchSize, func(es []port.Entry) error {
		c.batches.Add(1)
		if c.read != nil {
			c.read()
		}
		return fn(es)
	})
}

// recoverFresh writes keys counters (one event each) through a manager
// of one partition, then starts a second manager on a fresh store
// directory, so that it rebuilds the store from the whole changelog, with
// the stores and changelog wrapped; it returns what the keys must count.
func recoverFresh(t *testing.T, h *harness, keys int, stores *hookedStores, log *countingReplay) map[string]int64 {
	t.Helper()
	h.start()
	want := map[string]int64{}
	h.publishCounts(keys, keys, want)
	h.waitCounts(want)
	must(t, h.stop())

	h.dir = t.TempDir()
	h.wrapStores = func(p store.Provider) store.Provider { stores.Provider = p; return stores }
	h.wrapChangelog = func(c port.Changelog) port.Changelog { log.Changelog = c; return log }
	h.run()
	return want
}

var errApplyBroken = errors.New("store: the disk is gone")

// TestRecoveryApplyFailureStopsReplay: when the store fails a replayed
// batch, written in the applier's goroutine, the replay stops soon after
// (not at the log's end), the recovery fails with the store's error, and
// the store's offsets stay at the last batch it holds, with every record
// up to there and none after. The retry goes on from there.
func TestRecoveryApplyFailureStopsReplay(t *testing.T) {
	const keys, failAt = 200, 3
	h := newHarness(t, manager.Config{Partitions: 1, CommitInterval: 20 * time.Millisecond, RecoveryBufferSize: 8})
	var broken atomic.Bool
	broken.Store(true)
	var (
		mu      sync.Mutex
		applies int
		good    store.Offsets // of the last batch applied
		records int           // in the batches applied
	)
	stores := &hookedStores{before: func(b store.Batch) error {
		mu.Lock()
		defer mu.Unlock()
		applies++
		if broken.Load() && applies >= failAt {
			return fmt.Errorf("apply %d: %w", applies, errApplyBroken)
		}
		good, records = b.Offsets, records+len(b.Mutations)
		return nil
	}}
	log := &countingReplay{}
	type seen struct {
		suspend  manager.RecoverySuspend
		offs     store.Offsets
		count    int
		applies  int
		good     store.Offsets
		records  int
		batches  int64
		problems []string
	}
	suspended := make(chan seen, 1)
	h.cfg.RecoveryHooks.OnSuspend = func(s manager.RecoverySuspend) {
		// The task's goroutine, after the recovery returned: the applier
		// has stopped.
		v := seen{suspend: s, batches: log.batches.Load()}
		st := stores.opened()
		var err error
		if v.offs, err = st.Offsets(); err != nil {
			v.problems = append(v.problems, err.Error())
		}
		if v.count, err = st.Count("counts"); err != nil {
			v.problems = append(v.problems, err.Error())
		}
		mu.Lock()
		v.applies, v.good, v.records = applies, good, records
		mu.Unlock()
		select {
		case suspended <- v:
		default:
		}
	}
	want := recoverFresh(t, h, keys, stores, log)

	var v seen
	select {
	case v = <-suspended:
	case <-time.After(20 * time.Second):
		t.Fatal("the recovery did not fail")
	}
	if len(v.problems) > 0 {
		t.Fatalf("reading the store: %v", v.problems)
	}
	if v.suspend.Reason != manager.SuspendFailed || !errors.Is(v.suspend.Err, errApplyBroken) {
		t.Fatalf("suspended with %s, %v; want %s with the store's error", v.suspend.Reason, v.suspend.Err, manager.SuspendFailed)
	}
	if v.applies != failAt {
		t.Errorf("%d batches reached the store; the applier should have stopped at the failed one, the %dth", v.applies, failAt)
	}
	// Batches of 4 records (half the buffer): the whole log is about 50.
	if v.batches > keys/2/4 {
		t.Errorf("the replay passed on %d batches after the store failed at its %dth transaction", v.batches, failAt)
	}
	if v.offs.Changelog != v.good.Changelog || v.suspend.Applied != v.good.Changelog {
		t.Errorf("store offsets %d, reported applied %d; the last batch in the store ends at %d",
			v.offs.Changelog, v.suspend.Applied, v.good.Changelog)
	}
	if v.count != v.records || v.count == 0 {
		t.Errorf("the store holds %d keys; the batches applied wrote %d (one record per key)", v.count, v.records)
	}

	broken.Store(false)
	h.waitCounts(want)
}

// TestRecoveryReplayReadsWhileStoreWrites: the replay reads the next batch
// while the store still writes the one before (a replay that waited for
// each transaction made the first write wait here for ever).
func TestRecoveryReplayReadsWhileStoreWrites(t *testing.T) {
	const keys = 40
	h := newHarness(t, manager.Config{Partitions: 1, CommitInterval: 20 * time.Millisecond, RecoveryBufferSize: 8})
	log := &countingReplay{}
	next := make(chan struct{})
	var once sync.Once
	log.read = func() {
		if log.batches.Load() >= 2 {
			once.Do(func() { close(next) })
		}
	}
	var first atomic.Bool
	var overlapped atomic.Bool
	stores := &hookedStores{before: func(store.Batch) error {
		if first.Swap(true) {
			return nil
		}
		select {
		case <-next:
			overlapped.Store(true)
		case <-time.After(5 * time.Second):
		}
		return nil
	}}
	want := recoverFresh(t, h, keys, stores, log)
	h.waitCounts(want)
	if !overlapped.Load() {
		t.Fatal("the replay did not read a second batch while the store wrote the first")
	}
}

// rebuildingStore is a hookedStore that can be rebuilt unsynced, as the
// bbolt store it wraps.
type rebuildingStore struct{ hookedStore }

func (s rebuildingStore) StartRebuild() error { return s.Store.(*store.Bolt).StartRebuild() }
func (s rebuildingStore) EndRebuild() error   { return s.Store.(*store.Bolt).EndRebuild() }

// TestRecoveryRebuildUnsynced: a recovery into an empty store writes it
// marked as being rebuilt (unsynced; a crash meanwhile has it rebuilt) and
// removes the mark once the store holds the log, before the partition is
// taken over; the store then reopens as it is, without a rebuild.
func TestRecoveryRebuildUnsynced(t *testing.T) {
	const keys = 40
	h := newHarness(t, manager.Config{Partitions: 1, CommitInterval: 20 * time.Millisecond, RecoveryBufferSize: 8})
	marks := func() []string {
		m, err := filepath.Glob(filepath.Join(h.dir, "*.rebuilding"))
		must(t, err)
		return m
	}
	var marked, unmarked atomic.Int64
	stores := &hookedStores{before: func(store.Batch) error {
		if len(marks()) == 1 {
			marked.Add(1)
		} else {
			unmarked.Add(1)
		}
		return nil
	}}
	stores.wrap = func(s hookedStore) store.Store { return rebuildingStore{s} }
	want := recoverFresh(t, h, keys, stores, &countingReplay{})
	h.waitCounts(want)
	if marked.Load() == 0 || unmarked.Load() > 0 {
		t.Fatalf("%d replayed batches written with the store marked, %d without; want all marked", marked.Load(), unmarked.Load())
	}
	if m := marks(); len(m) > 0 {
		t.Fatalf("marks left after the recovery: %v", m)
	}
	must(t, h.stop())
	var l hookLog
	h.cfg.RecoveryHooks = l.hooks()
	h.start()
	h.waitCounts(want)
	for _, evs := range l.byPartition() {
		for _, ev := range evs {
			if st, ok := ev.(manager.RecoveryStart); ok && st.Rebuilt {
				t.Fatalf("the store was rebuilt after a restart: %s", st.Reason)
			}
		}
	}
}
