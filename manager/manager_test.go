package manager_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/manager"
	"github.com/edgetables/edgetables/manager/codec"
)

func TestCountsExact(t *testing.T) {
	h := newHarness(t, manager.Config{})
	h.start()
	want := map[string]int64{}
	h.publishCounts(2000, 37, want)
	h.waitCounts(want)
	st := h.m.Status()
	if st.EventsProcessed != 2000 {
		t.Errorf("events processed = %d, want 2000", st.EventsProcessed)
	}
	if len(st.Partitions) != 4 {
		t.Errorf("partitions = %d, want 4", len(st.Partitions))
	}
}

func TestCoalescing(t *testing.T) {
	// One commit for everything: a long interval and a large batch.
	h := newHarness(t, manager.Config{CommitInterval: time.Hour, CommitEvery: 1 << 30, CommitIdle: -1})
	h.start()
	want := map[string]int64{}
	h.publishCounts(3000, 3, want)
	waitFor(t, 10*time.Second, "events processed", func() bool { return h.m.Status().EventsProcessed == 3000 })
	// Stopping commits: 3 keys, so 3 records (plus markers, not counted).
	must(t, h.stop())
	if got := h.m.Status().ChangelogRecords; got != 3 {
		t.Errorf("changelog records = %d for 3000 updates of 3 keys, want 3", got)
	}
	h.start()
	h.waitCounts(want)
}

// TestCommitIdle: the events of a source that then goes idle are
// committed within about CommitIdle, not at the end of a long commit
// interval; with CommitIdle off they wait for the interval.
func TestCommitIdle(t *testing.T) {
	for _, tc := range []struct {
		name      string
		idle      time.Duration
		committed bool
	}{
		{"default", 0, true},
		{"off", -1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, manager.Config{CommitInterval: time.Hour, CommitEvery: 1 << 30, CommitIdle: tc.idle})
			h.start()
			want := map[string]int64{}
			h.publishCounts(500, 10, want)
			waitFor(t, 10*time.Second, "events processed", func() bool { return h.m.Status().EventsProcessed == 500 })
			if tc.committed {
				h.waitCounts(want)
				return
			}
			time.Sleep(time.Second)
			if got := h.m.Status().ChangelogRecords; got != 0 {
				t.Errorf("changelog records = %d a second after the source went idle, want 0 (CommitIdle off)", got)
			}
		})
	}
}

// TestCommitIdleSpacing: a trickle of events, one every 30 ms, each
// followed by a pause longer than CommitIdle, is committed at most once
// per 100 ms (idleCommitSpacing), not once per event.
func TestCommitIdleSpacing(t *testing.T) {
	h := newHarness(t, manager.Config{Partitions: 1, CommitInterval: time.Hour, CommitEvery: 1 << 30})
	h.start()
	const events = 40
	want := map[string]int64{}
	start := time.Now()
	for i := range events {
		h.publish("ev.k", []byte("{}"))
		want["k"]++
		time.Sleep(time.Until(start.Add(time.Duration(i+1) * 30 * time.Millisecond)))
	}
	h.waitCounts(want)
	took := time.Since(start)
	commits := h.m.Status().Commits
	t.Logf("%d events in %v: %d commits", events, took.Round(time.Millisecond), commits)
	if most := uint64(took/(100*time.Millisecond)) + 2; commits > most {
		t.Errorf("%d commits for %d events in %v; want at most %d (one per 100 ms)", commits, events, took, most)
	}
	if commits < 2 {
		t.Errorf("%d commits: the idle commits did not come", commits)
	}
}

func TestRestartReplaysOnlyTail(t *testing.T) {
	h := newHarness(t, manager.Config{})
	h.start()
	want := map[string]int64{}
	h.publishCounts(500, 20, want)
	h.waitCounts(want)
	must(t, h.stop())

	// A clean restart: the stores are up to date, nothing is replayed.
	h.start()
	for _, rp := range h.m.RecoveryProgress() {
		if rp.Records != 0 || rp.Rebuilt {
			t.Errorf("partition %d: replayed %d records (rebuilt %v) after a clean stop, want 0", rp.Partition, rp.Records, rp.Rebuilt)
		}
	}
	h.waitCounts(want)
	h.publishCounts(300, 20, want)
	h.waitCounts(want)
}

// TestCrashAfterAppend crashes after the changelog holds a commit but
// before the store does: recovery replays the tail, takes the source
// position from the commit marker and counts nothing twice.
func TestCrashAfterAppend(t *testing.T) {
	for _, tc := range []struct {
		fp     string
		atomic bool
	}{{manager.FPAfterAppend, false}, {manager.FPAfterPersist, false}, {manager.FPAfterAppend, true}, {manager.FPAfterPersist, true}} {
		fp := tc.fp
		t.Run(fmt.Sprintf("%s/atomic=%v", fp, tc.atomic), func(t *testing.T) {
			h := newHarness(t, manager.Config{CommitInterval: 50 * time.Millisecond})
			h.atomic = tc.atomic
			h.start()
			want := map[string]int64{}
			h.publishCounts(400, 10, want)
			h.waitCounts(want)

			var fired atomic.Bool
			disable := manager.EnableFailpoint(t, fp, func() error {
				fired.Store(true)
				return manager.ErrCrash
			})
			h.publishCounts(250, 10, want)
			if err := h.wait(); !errors.Is(err, manager.ErrCrash) {
				t.Fatalf("Run = %v, want the simulated crash", err)
			}
			disable()
			if !fired.Load() {
				t.Fatal("failpoint never fired")
			}
			h.start()
			h.waitCounts(want)
			replayed := 0
			for _, rp := range h.m.RecoveryProgress() {
				replayed += rp.Records
			}
			if fp == manager.FPAfterAppend && replayed == 0 {
				t.Error("recovery replayed nothing after a crash between changelog append and store commit")
			}
			// Give redelivered events a chance to be (wrongly) counted.
			time.Sleep(300 * time.Millisecond)
			h.waitCounts(want)
		})
	}
}

// TestExactlyOnceCommitsFitOneBatch: with atomic commits, a partition is
// committed as soon as it holds 999 uncommitted keys, so no commit is ever
// too large for one atomic batch, whatever the interval.
func TestExactlyOnceCommitsFitOneBatch(t *testing.T) {
	h := newHarness(t, manager.Config{Partitions: 2, CommitInterval: time.Hour, CommitEvery: 1 << 30, CommitIdle: -1})
	h.atomic = true
	h.start()
	want := map[string]int64{}
	h.publishCounts(6000, 4000, want)
	waitFor(t, 20*time.Second, "forced commits", func() bool { return h.m.Status().ChangelogRecords >= 3000 })
	must(t, h.stop())
	h.cfg.CommitInterval = 50 * time.Millisecond // the rest is committed as usual
	h.start()
	h.waitCounts(want)
}

func TestRebuildUntrustedStore(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, h *harness)
	}{
		{"corrupt file", func(t *testing.T, h *harness) {
			files, _ := filepath.Glob(filepath.Join(h.dir, "*.db"))
			if len(files) == 0 {
				t.Fatal("no store files")
			}
			for _, f := range files {
				corrupt(t, f)
			}
		}},
		{"deleted stores", func(t *testing.T, h *harness) {
			must(t, os.RemoveAll(h.dir))
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, manager.Config{})
			h.start()
			want := map[string]int64{}
			h.publishCounts(600, 25, want)
			h.waitCounts(want)
			must(t, h.stop())
			c.damage(t, h)
			h.start()
			h.waitCounts(want)
			replayed := 0
			for _, rp := range h.m.RecoveryProgress() {
				replayed += rp.Records
			}
			if replayed < 25 {
				t.Errorf("replayed %d records, want at least one per key (25)", replayed)
			}
		})
	}
}

func TestDeadLetters(t *testing.T) {
	h := newHarness(t, manager.Config{})
	h.setup = func(m *manager.TableManager) {
		countSetup(h)(m)
		must(t, m.AddAgent(manager.Agent{
			Name: "strict", Subjects: []string{"bad.>"},
			Process: func(e *manager.Event) error {
				if _, err := e.JSON(); err != nil {
					return fmt.Errorf("%w: %w", manager.ErrBadEvent, err)
				}
				if string(e.Data) == `{"panic":true}` {
					panic("agent bug")
				}
				return nil
			},
		}))
	}
	h.start()
	h.publish("bad.one", []byte("not json"))
	h.publish("bad.two", []byte(`{"panic":true}`))
	h.publish("bad.three", []byte(`{"ok":true}`))
	waitFor(t, 10*time.Second, "two dead letters", func() bool { return h.m.Status().DeadLetters["strict"] == 2 })

	cons, err := h.js.OrderedConsumer(context.Background(), jetstream.DeadLetterStream(h.app), natsjs.OrderedConsumerConfig{})
	must(t, err)
	batch, err := cons.Fetch(2, natsjs.FetchMaxWait(5*time.Second))
	must(t, err)
	var subjects []string
	for msg := range batch.Messages() {
		subjects = append(subjects, msg.Headers().Get("Edgetables-Source-Subject"))
		if msg.Subject() != jetstream.DeadLetterSubject(h.app, "strict") {
			t.Errorf("dead letter on %s", msg.Subject())
		}
		if msg.Headers().Get("Edgetables-Reason") == "" {
			t.Error("dead letter without a reason")
		}
	}
	if len(subjects) != 2 || subjects[0] != "bad.one" || subjects[1] != "bad.two" {
		t.Errorf("dead letters from %v, want [bad.one bad.two]", subjects)
	}
	// Processing went on.
	want := map[string]int64{}
	h.publishCounts(10, 2, want)
	h.waitCounts(want)
}

func TestWrongPartitionWriteRefused(t *testing.T) {
	h := newHarness(t, manager.Config{Partitions: 8})
	var refused atomic.Value
	h.setup = func(m *manager.TableManager) {
		countSetup(h)(m)
		must(t, m.AddAgent(manager.Agent{
			Name: "misrouted", Subjects: []string{"bad.>"},
			Process: func(e *manager.Event) error {
				// Write every key until one lands in another partition.
				for i := 0; i < 64; i++ {
					if err := h.counter.Set(e, fmt.Sprint("x", i), 1); err != nil {
						refused.Store(err)
						return err
					}
				}
				return nil
			},
		}))
	}
	h.start()
	h.publish("bad.x", []byte("{}"))
	waitFor(t, 10*time.Second, "refused write", func() bool { return refused.Load() != nil })
	if err := refused.Load().(error); !errors.Is(err, manager.ErrWrongPartition) {
		t.Errorf("error = %v, want ErrWrongPartition", err)
	}
	waitFor(t, 10*time.Second, "dead letter", func() bool { return h.m.Status().DeadLetters["misrouted"] == 1 })
}

func TestAddAfterStart(t *testing.T) {
	h := newHarness(t, manager.Config{})
	m := h.start()
	err := m.Add(manager.NewTable(manager.TableConfig[string, int64]{Name: "late", Keys: codec.String{}, Values: codec.Int64{}}))
	if !errors.Is(err, manager.ErrStarted) {
		t.Errorf("Add after start = %v, want ErrStarted", err)
	}
}

// TestTableMovesToANewManagerOnlyAfterRun: a table belongs to one running
// manager; once that manager's Run has returned (a node starting again in
// process), the same table may be added to a new one, which recovers it.
func TestTableMovesToANewManagerOnlyAfterRun(t *testing.T) {
	h := newHarness(t, manager.Config{Partitions: 2})
	first := h.start()
	want := map[string]int64{}
	h.publishCounts(20, 4, want)
	h.waitCounts(want)
	table := h.counter

	h.setup = func(m *manager.TableManager) {} // the old table and agent are added by hand
	other := h.newManager()
	if err := other.Add(table); err == nil {
		t.Fatal("a table of a running manager was added to another")
	}
	must(t, h.stop())
	if err := other.Add(table); err != nil {
		t.Fatalf("after the first manager's Run returned: %v", err)
	}
	_ = first
	h.publishCounts(10, 4, want)
	next := other
	must(t, next.AddAgent(manager.Agent{Name: "count", Subjects: []string{"ev.*"},
		Key: func(e *manager.Event) ([]byte, error) { return []byte(e.Token(2)), nil },
		Process: func(e *manager.Event) error {
			n, err := table.Get(e, string(e.Key))
			if err != nil {
				return err
			}
			return table.Set(e, string(e.Key), n+1)
		}}))
	h.m = next
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- next.Run(ctx) }()
	h.counter = table
	h.waitCounts(want)
}
