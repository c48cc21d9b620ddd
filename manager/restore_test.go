package manager_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/manager"
	"github.com/edgetables/edgetables/manager/status"
)

// hookLog records every recovery hook call, in order.
type hookLog struct {
	mu     sync.Mutex
	events []any
}

func (l *hookLog) add(ev any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, ev)
}

func (l *hookLog) hooks() manager.RecoveryHooks {
	return manager.RecoveryHooks{
		OnStart:   func(ev manager.RecoveryStart) { l.add(ev) },
		OnBatch:   func(ev manager.RecoveryBatch) { l.add(ev) },
		OnEnd:     func(ev manager.RecoveryEnd) { l.add(ev) },
		OnSuspend: func(ev manager.RecoverySuspend) { l.add(ev) },
	}
}

// byPartition returns the calls for each partition, in order.
func (l *hookLog) byPartition() map[int][]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[int][]any{}
	for _, ev := range l.events {
		var p int
		switch e := ev.(type) {
		case manager.RecoveryStart:
			p = e.Partition
		case manager.RecoveryBatch:
			p = e.Partition
		case manager.RecoveryEnd:
			p = e.Partition
		case manager.RecoverySuspend:
			p = e.Partition
		}
		out[p] = append(out[p], ev)
	}
	return out
}

// checkCompleted checks that each partition's calls are one OnStart, its
// batches, one OnEnd, with figures that agree with each other and with
// the recovery's progress, and returns the records replayed in all.
func checkCompleted(t *testing.T, l *hookLog, progress []status.RecoveryProgress) (records int, starts []manager.RecoveryStart) {
	t.Helper()
	calls := l.byPartition()
	for _, rp := range progress {
		evs := calls[rp.Partition]
		if len(evs) < 2 {
			t.Fatalf("partition %d: hook calls %v, want at least a start and an end", rp.Partition, evs)
		}
		start, ok := evs[0].(manager.RecoveryStart)
		if !ok {
			t.Fatalf("partition %d: first call %T, want RecoveryStart", rp.Partition, evs[0])
		}
		if start.Kind != manager.RecoveryActive || start.From != rp.From || start.HighWater != rp.HighWater || start.Rebuilt != rp.Rebuilt {
			t.Errorf("partition %d: start %+v disagrees with progress %+v", rp.Partition, start, rp)
		}
		end, ok := evs[len(evs)-1].(manager.RecoveryEnd)
		if !ok {
			t.Fatalf("partition %d: last call %T, want RecoveryEnd", rp.Partition, evs[len(evs)-1])
		}
		total, lastApplied := 0, uint64(0)
		for _, ev := range evs[1 : len(evs)-1] {
			b, ok := ev.(manager.RecoveryBatch)
			if !ok {
				t.Fatalf("partition %d: call %T between start and end, want batches only", rp.Partition, ev)
			}
			total += b.Records
			if b.Total != total || b.Applied <= lastApplied || b.Applied > start.HighWater || b.Following {
				t.Errorf("partition %d: batch %+v after %d records at %d, high water %d", rp.Partition, b, total-b.Records, lastApplied, start.HighWater)
			}
			lastApplied = b.Applied
		}
		// The takeover appends a marker after the replayed tail.
		if end.Records != total || end.Records != rp.Records || end.Applied <= start.HighWater || end.Applied != rp.Applied || end.Took <= 0 {
			t.Errorf("partition %d: end %+v, batches %d records, progress %+v", rp.Partition, end, total, rp)
		}
		records += total
		starts = append(starts, start)
	}
	return records, starts
}

// TestRecoveryHooksTailReplay: a restart after a crash between changelog
// append and store commit replays the tail; the hooks see it in order.
func TestRecoveryHooksTailReplay(t *testing.T) {
	var l hookLog
	h := newHarness(t, manager.Config{CommitInterval: 50 * time.Millisecond})
	h.start()
	want := map[string]int64{}
	h.publishCounts(400, 10, want)
	h.waitCounts(want)
	disable := manager.EnableFailpoint(t, manager.FPAfterAppend, func() error { return manager.ErrCrash })
	h.publishCounts(200, 10, want)
	if err := h.wait(); !errors.Is(err, manager.ErrCrash) {
		t.Fatalf("Run = %v, want the simulated crash", err)
	}
	disable()

	h.cfg.RecoveryHooks = l.hooks()
	h.start()
	h.waitCounts(want)
	records, starts := checkCompleted(t, &l, h.m.RecoveryProgress())
	if records == 0 {
		t.Error("the hooks saw no record replayed after a crash between append and store commit")
	}
	for _, s := range starts {
		if s.Rebuilt {
			t.Errorf("partition %d rebuilt after a crash: %s", s.Partition, s.Reason)
		}
	}
}

// TestRecoveryHooksRebuild: stores deleted, every partition is rebuilt by a
// full replay, and the hooks say so.
func TestRecoveryHooksRebuild(t *testing.T) {
	var l hookLog
	h := newHarness(t, manager.Config{RecoveryBufferSize: 7})
	h.start()
	want := map[string]int64{}
	h.publishCounts(300, 40, want)
	h.waitCounts(want)
	must(t, h.stop())
	must(t, os.RemoveAll(h.dir))
	// A full replay reads every message the (compacted) log holds.
	var inLog uint64
	for p := 0; p < 4; p++ {
		s, err := h.js.Stream(context.Background(), jetstream.ChangelogStream(h.app, p))
		must(t, err)
		inLog += s.CachedInfo().State.Msgs
	}

	h.cfg.RecoveryHooks = l.hooks()
	h.start()
	h.waitCounts(want)
	records, _ := checkCompleted(t, &l, h.m.RecoveryProgress())
	if uint64(records) != inLog || records < 40 {
		t.Errorf("hooks saw %d entries replayed, want every message of the log (%d), at least one per key (40)", records, inLog)
	}
}

// syncBuffer is a log destination safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRecoveryStallWarningAndSuspend: a recovery that makes no progress
// (a hook that blocks) is warned about with its phase; stopping the
// manager then suspends it, with no end.
func TestRecoveryStallWarningAndSuspend(t *testing.T) {
	h := newHarness(t, manager.Config{Partitions: 1, RecoveryBufferSize: 5})
	h.start()
	want := map[string]int64{}
	h.publishCounts(100, 30, want)
	h.waitCounts(want)
	must(t, h.stop())
	must(t, os.RemoveAll(h.dir))

	var l hookLog
	release := make(chan struct{})
	var once sync.Once
	hooks := l.hooks()
	onBatch := hooks.OnBatch
	hooks.OnBatch = func(b manager.RecoveryBatch) {
		onBatch(b)
		once.Do(func() { <-release }) // the first batch stalls the recovery
	}
	var logs syncBuffer
	h.cfg.RecoveryHooks = hooks
	h.cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	m := h.newManager()
	manager.SetProgressLogTiming(m, 20*time.Millisecond, 300*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()

	waitFor(t, 10*time.Second, "stall warning", func() bool { return strings.Contains(logs.String(), "recovery stalled") })
	var warn string
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "recovery stalled") {
			warn = line
			break
		}
	}
	for _, part := range []string{"partition=0", `waiting_for="` + status.PhaseReplaying + `"`, "tables=[counts]", "remaining="} {
		if !strings.Contains(warn, part) {
			t.Errorf("stall warning %q lacks %s", warn, part)
		}
	}
	rp := m.RecoveryProgress()
	if len(rp) != 1 || rp[0].Phase != status.PhaseReplaying || rp[0].RecordsRemaining == 0 || !rp[0].Ended.IsZero() {
		t.Fatalf("progress while stalled = %+v, want replaying with records remaining", rp)
	}

	cancel()
	close(release)
	select {
	case err := <-done:
		must(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("manager did not stop")
	}
	evs := l.byPartition()[0]
	if len(evs) < 3 {
		t.Fatalf("hook calls %v, want start, batch, suspend", evs)
	}
	if _, ok := evs[0].(manager.RecoveryStart); !ok {
		t.Errorf("first call %T, want RecoveryStart", evs[0])
	}
	s, ok := evs[len(evs)-1].(manager.RecoverySuspend)
	if !ok {
		t.Fatalf("last call %T, want RecoverySuspend", evs[len(evs)-1])
	}
	total := 0
	for _, ev := range evs[1 : len(evs)-1] {
		b, ok := ev.(manager.RecoveryBatch)
		if !ok {
			t.Fatalf("call %T before the suspension, want batches only", ev)
		}
		total += b.Records
	}
	// Stopping releases every partition: either reason may win the race.
	if (s.Reason != manager.SuspendStopped && s.Reason != manager.SuspendRevoked) || s.Err != nil || s.Records != total || s.Applied == 0 {
		t.Errorf("suspend = %+v after %d records, want stopped or revoked with the progress made", s, total)
	}
}
