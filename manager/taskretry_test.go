package manager_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgetables/edgetables/manager"
	"github.com/edgetables/edgetables/manager/port"
)

// failingReplay is a changelog whose Replay fails while broken is set,
// and leaves out the log's last two entries while short is set, as one
// reading a replica that lags does.
type failingReplay struct {
	port.Changelog
	broken, short atomic.Bool
	calls         atomic.Int64
	// intrude, if set, is called before each replay with the partition
	// and the end the replay is to reach, until it returns true. Replays
	// run one at a time in the tests that set it.
	intrude  func(p int, until uint64) bool
	intruded atomic.Bool
}

var errReplayBroken = errors.New("replay: the log cannot be read")

func (c *failingReplay) Replay(ctx context.Context, p int, from, until uint64, batchSize int, fn func([]port.Entry) error) error {
	if c.intrude != nil && !c.intruded.Load() && c.intrude(p, until) {
		c.intruded.Store(true)
	}
	switch {
	case c.broken.Load():
		c.calls.Add(1)
		return errReplayBroken
	case c.short.Load() && until > from:
		c.calls.Add(1)
		until -= 2
	}
	return c.Changelog.Replay(ctx, p, from, until, batchSize, fn)
}

// restartOnEmptyStores counts 40 events over 8 keys with a manager of cfg
// (2 partitions, 20 ms commits, if unset) whose changelog is fr, stops it,
// calls arm, and starts a new one on an empty store directory, so that
// every partition replays its log; it returns the counts and the new
// manager, not waiting for it to be ready.
func restartOnEmptyStores(t *testing.T, fr *failingReplay, cfg manager.Config, arm func(h *harness)) (*harness, map[string]int64, *manager.TableManager) {
	t.Helper()
	if cfg.Partitions == 0 {
		cfg.Partitions, cfg.CommitInterval = 2, 20*time.Millisecond
	}
	h := newHarness(t, cfg)
	h.wrapChangelog = func(c port.Changelog) port.Changelog { fr.Changelog = c; return fr }
	h.start()
	want := map[string]int64{}
	h.publishCounts(40, 8, want)
	h.waitCounts(want)
	must(t, h.stop())
	h.dir = t.TempDir()
	arm(h)
	return h, want, h.run()
}

// TestRecoveryFailureIsBoundedAndVisible: a recovery that keeps failing is
// retried with a growing pause (not once a second for ever, one warning
// each), shows in Readiness and the partition's status with its attempts
// and error, is counted, and ends by itself once the log can be read.
func TestRecoveryFailureIsBoundedAndVisible(t *testing.T) {
	fr := &failingReplay{}
	h, want, m := restartOnEmptyStores(t, fr, manager.Config{}, func(*harness) { fr.broken.Store(true) })

	waitFor(t, 20*time.Second, "a failing recovery in the readiness reasons", func() bool {
		_, reasons := m.Readiness()
		return len(reasons) > 0 && strings.Contains(strings.Join(reasons, "; "), "recovery failing")
	})
	time.Sleep(6 * time.Second)
	ready, reasons := m.Readiness()
	if ready {
		t.Fatal("ready while recoveries fail")
	}
	t.Logf("not ready: %v", reasons)
	if !strings.Contains(strings.Join(reasons, "; "), errReplayBroken.Error()) {
		t.Errorf("the reasons do not name the error: %v", reasons)
	}
	st := m.Status()
	failing := 0
	for _, p := range st.Partitions {
		if f := p.Failing; f != nil {
			failing++
			if f.Task != "recover" || f.Attempts < 2 || f.Error == "" || f.RetryIn <= time.Second {
				t.Errorf("partition %d: %+v; want a recover streak of at least 2 attempts with a pause above 1s", p.Partition, f)
			}
			// 1 + 2 + 4 s of pauses: at most 4 attempts in about 7 s, where a
			// pause of a second gave 7 or more.
			if f.Attempts > 4 {
				t.Errorf("partition %d: %d attempts in %v: the pause does not grow", p.Partition, f.Attempts, time.Since(f.Since))
			}
		}
	}
	if failing != 2 {
		t.Errorf("%d partitions show a failing recovery; want 2: %+v", failing, st.Partitions)
	}
	if st.RecoveryFailures < 4 {
		t.Errorf("recovery failures counted: %d; want at least 4", st.RecoveryFailures)
	}

	fr.broken.Store(false)
	waitFor(t, 30*time.Second, "recovered and ready", func() bool { return m.Ready() })
	for _, p := range m.Status().Partitions {
		if p.Failing != nil {
			t.Errorf("partition %d still shows a failure after recovering: %+v", p.Partition, p.Failing)
		}
	}
	h.waitCounts(want)
}

// TestSourceFailureIsBoundedAndVisible: a source that can be neither read
// nor opened again (JetStream down) is retried with a growing pause, not
// ten times a second with a warning each; after a few seconds the node
// says it is not ready and why; once the source answers it goes on by
// itself and counts every event once.
func TestSourceFailureIsBoundedAndVisible(t *testing.T) {
	src := &flakySource{}
	h := newHarness(t, manager.Config{Partitions: 2, CommitInterval: 20 * time.Millisecond})
	h.wrapSource = func(s port.Source) port.Source { src.Source = s; return src }
	m := h.start()
	want := map[string]int64{}
	h.publishCounts(40, 8, want)
	h.waitCounts(want)

	src.failOpens.Store(1 << 20)
	src.breakNext.Store(true)
	waitFor(t, 20*time.Second, "the source failing in the readiness reasons", func() bool {
		_, reasons := m.Readiness()
		return strings.Contains(strings.Join(reasons, "; "), "source: failing")
	})
	time.Sleep(3 * time.Second)
	_, reasons := m.Readiness()
	t.Logf("not ready: %v", reasons)
	// About 8 s of failures: pauses of 0.1, 0.2, 0.4, ... 5 s make about 8
	// attempts; a fixed 100 ms pause made 80.
	if n := src.failed.Load(); n > 15 {
		t.Errorf("%d failed opens in about 8 s: the pause does not grow", n)
	}
	h.publishCounts(20, 8, want)
	src.failOpens.Store(0)
	waitFor(t, 30*time.Second, "ready again", func() bool { return m.Ready() })
	h.waitCounts(want)
}

// TestRecoveryRefusesAShortReplay: a replay that ends before the log's end
// while the log's leader still holds the messages after it (a lagging
// replica) is not taken over, which would drop the records it missed: the
// recovery fails and is retried, and counts exactly once the replay reads
// the whole log. (Messages removed by hand are the other case, taken over:
// edge's TestDeletedChangelogTail.)
func TestRecoveryRefusesAShortReplay(t *testing.T) {
	fr := &failingReplay{}
	h, want, m := restartOnEmptyStores(t, fr, manager.Config{}, func(*harness) { fr.short.Store(true) })
	waitFor(t, 20*time.Second, "a short replay in the readiness reasons", func() bool {
		_, reasons := m.Readiness()
		return strings.Contains(strings.Join(reasons, "; "), "before the log's end")
	})
	if m.Ready() {
		t.Fatal("ready after a short replay")
	}
	fr.short.Store(false)
	waitFor(t, 30*time.Second, "recovered and ready", func() bool { return m.Ready() })
	h.waitCounts(want)
}

// TestReplaySupersededByAnotherWriter: another writer commits to a
// partition's log while its recovery begins, so that the marker at the end
// the replay was to reach is compacted away by the writer's new one (one
// marker subject per partition). The replay ends short of that end with
// the next message after it: no removal to warn about, and no lagging
// replica. The takeover, expecting the old end, is fenced and replays
// the other writer's messages; every count is right, the other's record
// included.
func TestReplaySupersededByAnotherWriter(t *testing.T) {
	logs := &syncBuffer{}
	fr := &failingReplay{}
	intruded := keyIn(0, 2, "intruded")
	h, want, m := restartOnEmptyStores(t, fr, manager.Config{Logger: slog.New(slog.NewTextHandler(logs, nil))}, func(h *harness) {
		fr.intrude = func(p int, until uint64) bool {
			if p != 0 {
				return false
			}
			marker, seq, ok, err := fr.LastCommit(context.Background(), 0)
			if err != nil || !ok || seq != until {
				t.Errorf("partition 0's last marker: %v at %d (%v); want one at the replay's end %d", ok, seq, err, until)
				return true
			}
			h.intruderAt(0, 0, intruded, 42, marker.SourceSeq)
			return true
		}
	})
	waitFor(t, 20*time.Second, "recovered and ready", func() bool { return m.Ready() })
	h.waitCounts(want)
	if got, ok, err := h.counter.Lookup(context.Background(), intruded); err != nil || !ok || got != 42 {
		t.Errorf("the other writer's record: %d, %v, %v; want 42", got, ok, err)
	}
	if !fr.intruded.Load() {
		t.Fatal("partition 0 was never replayed")
	}
	if out := logs.String(); strings.Contains(out, "last messages were removed") {
		t.Errorf("a superseded end was taken for a removed one:\n%s", out)
	}
}
