package manager_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/jetstream/jstest"
	"github.com/edgetables/edgetables/manager"
	"github.com/edgetables/edgetables/manager/codec"
	"github.com/edgetables/edgetables/manager/port"
	"github.com/edgetables/edgetables/store"
)

// harness runs a table manager on a real embedded JetStream server and real
// bbolt files, and can restart it on the same data.
type harness struct {
	t       testing.TB
	app     string
	dir     string // bbolt stores
	nc      *nats.Conn
	js      natsjs.JetStream
	cfg     manager.Config
	atomic  bool // exactly-once: atomic changelog commits
	setup   func(m *manager.TableManager)
	m       *manager.TableManager
	cancel  context.CancelFunc
	done    chan error
	counter *manager.Table[string, int64]
	// beforeCommit is the changelog's failure injection point.
	beforeCommit func(p, batch int) error
	// wrapSource, if set, wraps the source the manager reads.
	wrapSource func(port.Source) port.Source
	// wrapChangelog, if set, wraps the changelog the manager writes.
	wrapChangelog func(port.Changelog) port.Changelog
	// wrapStores, if set, wraps the provider of the partitions' stores.
	wrapStores func(store.Provider) store.Provider
}

// countSetup declares a count table "counts" fed by agent "count" on
// subjects "ev.*", keyed by the second token.
func countSetup(h *harness) func(m *manager.TableManager) { return checkedCountSetup(h, nil) }

// checkedCountSetup is countSetup whose agent refuses an event when check
// (if set) returns an error for its data.
func checkedCountSetup(h *harness, check func(data []byte) error) func(m *manager.TableManager) {
	return func(m *manager.TableManager) {
		h.counter = manager.NewTable(manager.TableConfig[string, int64]{
			Name: "counts", Keys: codec.String{}, Values: codec.Int64{}})
		must(h.t, m.Add(h.counter))
		must(h.t, m.AddAgent(manager.Agent{
			Name: "count", Subjects: []string{"ev.*"},
			Key: func(e *manager.Event) ([]byte, error) { return []byte(e.Token(2)), nil },
			Process: func(e *manager.Event) error {
				if check != nil {
					if err := check(e.Data); err != nil {
						return err
					}
				}
				k := string(e.Key)
				n, err := h.counter.Get(e, k)
				if err != nil {
					return err
				}
				return h.counter.Set(e, k, n+1)
			},
		}))
	}
}

func newHarness(t testing.TB, cfg manager.Config) *harness {
	t.Helper()
	return newSyncHarness(t, cfg, false)
}

// newSyncHarness is newHarness on a server that fsyncs every write when
// syncAlways is set.
func newSyncHarness(t testing.TB, cfg manager.Config, syncAlways bool) *harness {
	t.Helper()
	_, nc, js := jstest.StartSync(t, t.TempDir(), syncAlways)
	h := &harness{t: t, app: "test", dir: filepath.Join(t.TempDir(), "tables"), nc: nc, js: js, cfg: cfg}
	h.setup = countSetup(h)
	return h
}

func (h *harness) newManager() *manager.TableManager {
	h.t.Helper()
	ctx := context.Background()
	cfg := h.cfg
	if cfg.Partitions == 0 {
		cfg.Partitions = 4
	}
	cfg.Node = "n1"
	cl, err := jetstream.NewChangelog(ctx, h.js, jetstream.ChangelogConfig{App: h.app, Partitions: cfg.Partitions, Atomic: h.atomic,
		BeforeCommit: h.beforeCommit})
	if h.atomic {
		// The binary's limits.
		cfg.MaxCommitRecords = jetstream.MaxCommitRecords(true)
		cfg.CommitCapacity = jetstream.CommitCapacity
	}
	cfg.MaxRecordBytes = jetstream.MaxRecordBytes(h.nc)
	must(h.t, err)
	src, err := jetstream.NewSource(ctx, h.js, jetstream.SourceConfig{App: h.app, Subjects: []string{"ev.*", "bad.>"}, Consumer: "n1"})
	must(h.t, err)
	dlq, err := jetstream.NewDeadLetters(ctx, h.js, h.app, 1)
	must(h.t, err)
	cfg.Changelog, cfg.Source, cfg.DeadLetters = cl, src, dlq
	if h.wrapSource != nil {
		cfg.Source = h.wrapSource(src)
	}
	if h.wrapChangelog != nil {
		cfg.Changelog = h.wrapChangelog(cl)
	}
	cfg.Stores = store.NewDir(h.dir, nil)
	if h.wrapStores != nil {
		cfg.Stores = h.wrapStores(cfg.Stores)
	}
	if cfg.Global == nil {
		gl, err := jetstream.NewGlobalLog(ctx, h.js, jetstream.GlobalConfig{App: h.app})
		must(h.t, err)
		cfg.Global = gl
	}
	cfg.GlobalStores = store.NewDir(h.globalDir(), nil)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(testWriter{h.t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	m, err := manager.New(cfg)
	must(h.t, err)
	h.setup(m)
	return m
}

// start runs a new manager in the background and waits until it is ready.
func (h *harness) start() *manager.TableManager {
	h.t.Helper()
	m := h.run()
	waitFor(h.t, 20*time.Second, "manager ready", func() bool { return m.Ready() })
	return m
}

// run starts a new manager without waiting for it to be ready.
func (h *harness) run() *manager.TableManager {
	h.m = h.newManager()
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan error, 1)
	m := h.m
	go func() { h.done <- m.Run(ctx) }()
	h.t.Cleanup(func() { h.stop() })
	return m
}

// globalDir is where the global tables' store is.
func (h *harness) globalDir() string { return filepath.Join(filepath.Dir(h.dir), "global") }

// stop stops the running manager gracefully and returns Run's error.
func (h *harness) stop() error {
	if h.cancel == nil {
		return nil
	}
	h.cancel()
	h.cancel = nil
	return <-h.done
}

// wait waits for Run to return by itself (after a simulated crash).
func (h *harness) wait() error {
	select {
	case err := <-h.done:
		h.cancel = nil
		return err
	case <-time.After(20 * time.Second):
		h.t.Fatal("manager did not stop")
		return nil
	}
}

func (h *harness) publish(subject string, data []byte) {
	h.t.Helper()
	if _, err := h.js.Publish(context.Background(), subject, data); err != nil {
		h.t.Fatalf("publish %s: %v", subject, err)
	}
}

// publishCounts publishes n events spread over keys and returns the
// expected counts.
func (h *harness) publishCounts(n, keys int, want map[string]int64) {
	h.t.Helper()
	var futs []natsjs.PubAckFuture
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("k%d", i%keys)
		f, err := h.js.PublishAsync("ev."+k, []byte("{}"), natsjs.WithStallWait(time.Minute))
		must(h.t, err)
		futs = append(futs, f)
		want[k]++
	}
	for _, f := range futs {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			h.t.Fatalf("publish: %v", err)
		case <-time.After(10 * time.Second):
			h.t.Fatal("publish ack timeout")
		}
	}
}

// waitCounts waits until the counts table holds exactly want.
func (h *harness) waitCounts(want map[string]int64) {
	h.t.Helper()
	var last string
	ok := poll(20*time.Second, func() bool {
		for k, n := range want {
			got, _, err := h.counter.Lookup(context.Background(), k)
			if err != nil || got != n {
				last = fmt.Sprintf("key %s: got %d, want %d (err %v)", k, got, n, err)
				return false
			}
		}
		return true
	})
	if !ok {
		bad := 0
		parts := map[int]int{}
		for k, n := range want {
			got, _, _ := h.counter.Lookup(context.Background(), k)
			if got != n {
				bad++
				parts[manager.PartitionOf([]byte(k), h.m.Partitions())]++
			}
		}
		h.t.Fatalf("counts never matched: %s (%d keys wrong, by partition %v)", last, bad, parts)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func poll(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cond()
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if !poll(d, cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}

// testWriter sends logs to t.Log.
type testWriter struct{ t testing.TB }

var logMu sync.Mutex

func (w testWriter) Write(b []byte) (int, error) {
	logMu.Lock()
	defer logMu.Unlock()
	w.t.Log(string(b[:len(b)-1]))
	return len(b), nil
}

// corrupt overwrites a file with garbage.
func corrupt(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, []byte("this is not a bbolt file, not at all"), 0o600); err != nil {
		t.Fatal(err)
	}
}

var _ = errors.Is
