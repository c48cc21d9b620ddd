package manager_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/manager"
	"github.com/edgetables/edgetables/manager/codec"
	"github.com/edgetables/edgetables/manager/port"
	"github.com/edgetables/edgetables/store"
)

// globalSetup declares a global table "limits" and a count table whose
// agent counts an event only while its key's limit is not reached.
func globalSetup(h *harness, limits **manager.GlobalTable[string, int64]) func(m *manager.TableManager) {
	return func(m *manager.TableManager) {
		*limits = manager.NewGlobalTable(manager.TableConfig[string, int64]{
			Name: "limits", Keys: codec.String{}, Values: codec.Int64{},
			Default: func() int64 { return 1 << 62 }})
		must(h.t, m.Add(*limits))
		h.counter = manager.NewTable(manager.TableConfig[string, int64]{
			Name: "counts", Keys: codec.String{}, Values: codec.Int64{}})
		must(h.t, m.Add(h.counter))
		must(h.t, m.AddAgent(manager.Agent{
			Name: "count", Subjects: []string{"ev.*"},
			Key: func(e *manager.Event) ([]byte, error) { return []byte(e.Token(2)), nil },
			Process: func(e *manager.Event) error {
				k := string(e.Key)
				limit, err := (*limits).Get(k)
				if err != nil {
					return err
				}
				n, err := h.counter.Get(e, k)
				if err != nil || n >= limit {
					return err
				}
				return h.counter.Set(e, k, n+1)
			},
		}))
	}
}

// TestGlobalTableReadsWritesAndAgents: a write is readable on the writing
// node as soon as it returns; agents of every partition read the global
// table; deletes and updates over deleted keys work; listings and counts
// see the whole table.
func TestGlobalTableReadsWritesAndAgents(t *testing.T) {
	h := newHarness(t, manager.Config{})
	var limits *manager.GlobalTable[string, int64]
	h.setup = globalSetup(h, &limits)
	m := h.start()
	ctx := context.Background()

	for i := range 8 {
		must(t, limits.Set(ctx, fmt.Sprintf("k%d", i), 3))
		if v, found, err := limits.Find(fmt.Sprintf("k%d", i)); err != nil || !found || v != 3 {
			t.Fatalf("read after Set = %d, %v, %v; want 3", v, found, err)
		}
	}
	want := map[string]int64{}
	h.publishCounts(80, 8, want)
	for k := range want {
		want[k] = 3 // the limit, in every partition
	}
	h.waitCounts(want)

	must(t, limits.Delete(ctx, "k0"))
	if v, found, err := limits.Find("k0"); err != nil || found || v != 1<<62 {
		t.Fatalf("deleted key = %d, %v, %v; want the default, not found", v, found, err)
	}
	v, err := limits.Update(ctx, "k0", func(v int64, found bool) (int64, error) {
		if found {
			return 0, errors.New("deleted key found")
		}
		return 5, nil
	})
	if err != nil || v != 5 {
		t.Fatalf("Update over a tombstone = %d, %v", v, err)
	}
	if _, err := limits.Update(ctx, "k1", func(int64, bool) (int64, error) { return 0, errBoom }); !errors.Is(err, errBoom) {
		t.Fatalf("Update whose function fails = %v, want its error", err)
	}
	if _, err := limits.PutJSON(ctx, []byte("k7"), []byte("12"), nil); err != nil {
		t.Fatalf("PutJSON: %v", err)
	}
	if v, err := limits.Get("k7"); err != nil || v != 12 {
		t.Fatalf("after PutJSON 12: %d, %v", v, err)
	}
	for _, bad := range []string{`"12"`, `1.5`, `{"n": 1}`, `12 13`} {
		if _, err := limits.PutJSON(ctx, []byte("k7"), []byte(bad), nil); !errors.Is(err, manager.ErrBadValue) {
			t.Errorf("PutJSON %s = %v, want ErrBadValue", bad, err)
		}
	}
	if n, err := m.Count("limits"); err != nil || n != 8 {
		t.Fatalf("Count = %d, %v; want 8", n, err)
	}
	kvs, err := m.Scan(ctx, "limits", nil, []byte("k5"), 10)
	if err != nil || len(kvs) != 2 || string(kvs[0].Key) != "k6" {
		t.Fatalf("Scan after k5 = %+v, %v", kvs, err)
	}
	if b, _, err := m.Get(ctx, "limits", []byte("k0")); err != nil || len(b) == 0 {
		t.Fatalf("TableManager.Get = %q, %v", b, err)
	}
	if _, _, err := m.Get(ctx, "limits", []byte("nope")); !errors.Is(err, manager.ErrKeyNotFound) {
		t.Fatalf("Get of a missing key = %v, want ErrKeyNotFound", err)
	}
	if !m.IsGlobal("limits") || m.IsGlobal("counts") {
		t.Error("IsGlobal is wrong")
	}
	var topics []string
	for _, ti := range m.TableList() {
		if ti.Name == "limits" {
			topics = ti.Changelog
		}
	}
	if len(topics) != 1 || topics[0] != "test.global.limits.>" {
		t.Errorf("changelog topics = %q", topics)
	}
	if st := m.Status().Global; st == nil || !st.Ready || st.AppliedOffset == 0 {
		t.Errorf("status = %+v", st)
	}
}

var errBoom = errors.New("boom")

// TestGlobalTableConcurrentUpdates: concurrent compare-and-set updates of
// one key lose nothing.
func TestGlobalTableConcurrentUpdates(t *testing.T) {
	h := newHarness(t, manager.Config{})
	var limits *manager.GlobalTable[string, int64]
	h.setup = globalSetup(h, &limits)
	h.start()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const workers, each = 6, 40
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if _, err := limits.Update(ctx, "n", func(v int64, found bool) (int64, error) {
					if !found {
						v = 0
					}
					return v + 1, nil
				}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if v, err := limits.Get("n"); err != nil || v != workers*each {
		t.Fatalf("after %d increments: %d, %v", workers*each, v, err)
	}
}

// TestGlobalTableRestart: a restarted node replays only what its store
// lacks (written meanwhile by another writer), and a corrupt store is
// rebuilt from the log.
func TestGlobalTableRestart(t *testing.T) {
	h := newHarness(t, manager.Config{})
	var limits *manager.GlobalTable[string, int64]
	h.setup = globalSetup(h, &limits)
	m := h.start()
	ctx := context.Background()
	for i := range 50 {
		must(t, limits.Set(ctx, fmt.Sprintf("k%d", i), int64(i)))
	}
	applied := m.Status().Global.AppliedOffset
	must(t, h.stop())

	// Another node writes while this one is down.
	gl, err := jetstream.NewGlobalLog(ctx, h.js, jetstream.GlobalConfig{App: h.app})
	must(t, err)
	v1001, err := codec.Int64{}.Encode(1001)
	must(t, err)
	if _, err := gl.Put(ctx, port.Record{Table: "limits", Key: []byte("k1"), Value: v1001}, nil); err != nil {
		t.Fatal(err)
	}
	st, err := store.NewDir(h.globalDir(), nil).Open(0)
	must(t, err)
	offs, err := st.Offsets()
	must(t, err)
	must(t, st.Close())
	if offs.Changelog != applied {
		t.Fatalf("persisted offset %d, want %d", offs.Changelog, applied)
	}

	m = h.start()
	if v, err := limits.Get("k1"); err != nil || v != 1001 {
		t.Fatalf("after restart: k1 = %d, %v; want the write made while down", v, err)
	}
	if got := m.Status().Global.AppliedOffset; got != applied+1 {
		t.Fatalf("applied %d after restart, want %d", got, applied+1)
	}
	must(t, h.stop())

	corrupt(t, filepath.Join(h.globalDir(), "partition-0000.db"))
	h.start()
	for i := range 50 {
		want := int64(i)
		if i == 1 {
			want = 1001
		}
		if v, err := limits.Get(fmt.Sprintf("k%d", i)); err != nil || v != want {
			t.Fatalf("after rebuild: k%d = %d, %v; want %d", i, v, err, want)
		}
	}
}

// TestGlobalTableNeedsLog: adding a global table to a manager without a
// global log fails.
func TestGlobalTableNeedsLog(t *testing.T) {
	h := newHarness(t, manager.Config{})
	ctx := context.Background()
	cl, err := jetstream.NewChangelog(ctx, h.js, jetstream.ChangelogConfig{App: h.app, Partitions: 2})
	must(t, err)
	src, err := jetstream.NewSource(ctx, h.js, jetstream.SourceConfig{App: h.app, Subjects: []string{"ev.*"}, Consumer: "n"})
	must(t, err)
	m, err := manager.New(manager.Config{Node: "n", Partitions: 2, Changelog: cl, Source: src, Stores: store.NewMemoryProvider()})
	must(t, err)
	g := manager.NewGlobalTable(manager.TableConfig[string, string]{Name: "g", Keys: codec.String{}, Values: codec.String{}})
	if err := m.Add(g); !errors.Is(err, manager.ErrNoGlobalLog) {
		t.Fatalf("Add = %v, want ErrNoGlobalLog", err)
	}
	if _, err := g.Get("k"); err == nil {
		t.Fatal("Get on an unbound global table succeeded")
	}
}

// unreadableState is a GlobalLog whose State fails while failing is above
// zero (counting down at each call), as a replicated log's does while it
// elects a leader.
type unreadableState struct {
	port.GlobalLog
	failing atomic.Int32
}

func (u *unreadableState) State(ctx context.Context) (port.LogState, error) {
	if u.failing.Add(-1) >= 0 {
		return port.LogState{}, errors.New("stream has no leader")
	}
	return u.GlobalLog.State(ctx)
}

// TestGlobalSyncWaitsForTheLog: Sync and Update wait while the log's state
// cannot be read, and Sync fails with the last error when ctx ends first.
func TestGlobalSyncWaitsForTheLog(t *testing.T) {
	h := newHarness(t, manager.Config{})
	gl, err := jetstream.NewGlobalLog(context.Background(), h.js, jetstream.GlobalConfig{App: h.app})
	must(t, err)
	log := &unreadableState{GlobalLog: gl}
	h.cfg.Global = log
	var limits *manager.GlobalTable[string, int64]
	h.setup = globalSetup(h, &limits)
	h.start()
	ctx := context.Background()
	must(t, limits.Set(ctx, "k", 1))

	log.failing.Store(3)
	if err := limits.Sync(ctx); err != nil {
		t.Fatalf("Sync while the state is unreadable three times: %v", err)
	}
	if n := log.failing.Load(); n >= 0 {
		t.Fatalf("Sync returned with %d failures of State left", n+1)
	}
	log.failing.Store(1 << 30)
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := limits.Sync(short); err == nil || !strings.Contains(err.Error(), "no leader") || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Sync until ctx ends = %v, want the state's error and the deadline", err)
	}
	log.failing.Store(0)
	if v, err := limits.Get("k"); err != nil || v != 1 {
		t.Fatalf("Get = %d, %v", v, err)
	}
}
