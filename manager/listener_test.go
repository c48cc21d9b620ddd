package manager_test

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgetables/edgetables/manager"
	"github.com/edgetables/edgetables/manager/port"
	"github.com/edgetables/edgetables/store"
)

// goroutineID returns the calling goroutine's id, from its stack header
// ("goroutine 7 [running]:").
func goroutineID() uint64 {
	var buf [64]byte
	n := runtime.Stack(buf[:], false)
	f := strings.Fields(string(buf[:n]))
	id, _ := strconv.ParseUint(f[1], 10, 64)
	return id
}

// openStores is a store provider that keeps the stores it opened, so that
// a test can read their offsets while the manager runs.
type openStores struct {
	store.Provider
	mu     sync.Mutex
	stores map[int]store.Store
}

func (o *openStores) Open(p int) (store.Store, error) {
	s, err := o.Provider.Open(p)
	if err == nil {
		o.mu.Lock()
		o.stores[p] = s
		o.mu.Unlock()
	}
	return s, err
}

func (o *openStores) get(p int) store.Store {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.stores[p]
}

// TestListenerSingleNode: a node alone calls its listener on the goroutine
// that called Run, in Faust's order (started, rebalance started, revoked,
// assigned, actives ready, standbys ready, then commits, stopped last),
// with what each event says already true: a partition's commit is
// reported once its changelog holds the marker and its store the offsets,
// with offsets that increase. A listener that panics does not stop the
// node. The listener's records are written without a lock and read after
// Run returned: under -race, calls from two goroutines would be reported.
func TestListenerSingleNode(t *testing.T) {
	h := newHarness(t, manager.Config{Partitions: 4, CommitInterval: 20 * time.Millisecond})
	stores := &openStores{stores: map[int]store.Store{}}
	h.wrapStores = func(p store.Provider) store.Provider { stores.Provider = p; return stores }
	var cl port.Changelog
	h.wrapChangelog = func(c port.Changelog) port.Changelog { cl = c; return c }

	var (
		m          *manager.TableManager
		events     []string
		commits    []manager.Committed
		problems   []string
		goroutines = map[uint64]bool{}
	)
	record := func(format string, args ...any) {
		goroutines[goroutineID()] = true
		events = append(events, fmt.Sprintf(format, args...))
	}
	h.cfg.Listener = manager.Listener{
		OnStarted: func() {
			record("started")
			panic("a listener bug") // logged; the node goes on
		},
		OnRebalanceStarted: func(g uint64) {
			record("rebalance started %d", g)
			if m.Ready() {
				problems = append(problems, "ready while a rebalance starts")
			}
		},
		OnPartitionsRevoked: func(ev manager.PartitionsRevoked) {
			record("revoked %d %v %v", ev.Generation, ev.Partitions, ev.Demoted)
		},
		OnPartitionsAssigned: func(ev manager.PartitionsAssigned) {
			record("assigned %d actives %v new %v standbys %v", ev.Generation, ev.Actives, ev.NewlyAssigned, ev.Standbys)
			if g := m.Status().Generation; g != ev.Generation {
				problems = append(problems, fmt.Sprintf("status generation %d when assigned %d", g, ev.Generation))
			}
		},
		OnActivesReady: func(ev manager.PartitionsReady) {
			record("actives ready %d %v", ev.Generation, ev.Partitions)
			if !m.Ready() {
				problems = append(problems, "not ready when actives are ready")
			}
		},
		OnStandbysReady: func(ev manager.PartitionsReady) {
			record("standbys ready %d %v", ev.Generation, ev.Partitions)
		},
		OnCommitted: func(ev manager.Committed) {
			record("committed")
			commits = append(commits, ev)
			// The changelog holds the marker, the store the offsets.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			marker, seq, ok, err := cl.LastCommit(ctx, ev.Partition)
			if err != nil || !ok || seq != ev.ChangelogOffset || marker.SourceSeq != ev.SourceSeq || marker.Generation != ev.Generation {
				problems = append(problems, fmt.Sprintf("%+v: changelog's last marker %+v at %d (found %v, err %v)", ev, marker, seq, ok, err))
			}
			off, err := stores.get(ev.Partition).Offsets()
			if err != nil || off.Source != ev.SourceSeq || off.Changelog != ev.ChangelogOffset {
				problems = append(problems, fmt.Sprintf("%+v: store offsets %+v (err %v)", ev, off, err))
			}
		},
		OnStopped: func(err error) { record("stopped %v", err) },
	}
	m = h.newManager()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var runner uint64
	done := make(chan error, 1)
	go func() {
		runner = goroutineID()
		done <- m.Run(ctx)
	}()
	waitFor(t, 20*time.Second, "manager ready", m.Ready)
	want := map[string]int64{}
	h.publishCounts(150, 20, want)
	h.waitCounts(want)
	h.publishCounts(150, 20, want)
	h.waitCounts(want)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// Read only now: Run returned.
	if len(goroutines) != 1 || !goroutines[runner] {
		t.Errorf("listener called on goroutines %v, want only Run's (%d)", goroutines, runner)
	}
	for _, p := range problems {
		t.Error(p)
	}
	head := []string{
		"started",
		"rebalance started 1",
		"revoked 1 [] []",
		"assigned 1 actives [0 1 2 3] new [0 1 2 3] standbys []",
		"actives ready 1 [0 1 2 3]",
		"standbys ready 1 []",
	}
	if len(events) < len(head)+2 || !slices.Equal(events[:len(head)], head) {
		t.Fatalf("listener calls begin %q, want %q", events[:min(len(events), len(head))], head)
	}
	for _, ev := range events[len(head) : len(events)-1] {
		if ev != "committed" {
			t.Errorf("call %q after the rebalance, want only commits before the stop", ev)
		}
	}
	if last := events[len(events)-1]; last != "stopped <nil>" {
		t.Errorf("last call %q, want stopped <nil>", last)
	}

	// Per partition, offsets increase; the writes of every partition are
	// committed, the last event's included.
	lastOf := map[int]manager.Committed{}
	records := map[int]int{}
	var top uint64
	for _, c := range commits {
		if prev, ok := lastOf[c.Partition]; ok && (c.SourceSeq <= prev.SourceSeq || c.ChangelogOffset <= prev.ChangelogOffset) {
			t.Errorf("partition %d: commit %+v after %+v", c.Partition, c, prev)
		}
		lastOf[c.Partition] = c
		records[c.Partition] += c.Records
		top = max(top, c.SourceSeq)
	}
	for p := range 4 {
		if records[p] == 0 {
			t.Errorf("partition %d: no commit with records (commits %v)", p, commits)
		}
	}
	if top != 300 {
		t.Errorf("highest committed source position %d, want 300", top)
	}
}
