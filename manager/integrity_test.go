package manager_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/manager"
	"github.com/edgetables/edgetables/manager/port"
	"github.com/edgetables/edgetables/manager/status"
)

// The committed source position of a partition must never pass an event
// whose effects are not in the same commit, nor stay short of events whose
// effects are: each test below drives one interleaving that broke it.

// flakySource lets a test fail the reader and the opening of readers, and
// make new readers deliver nothing, as a source stream electing a leader
// (JetStream 503) or a consumer on a dead node would.
type flakySource struct {
	port.Source
	failOpens atomic.Int32 // the next Opens that fail
	failed    atomic.Int32 // Opens failed
	opens     atomic.Int32 // Opens that succeeded
	deaf      atomic.Bool  // readers opened while set deliver nothing
	breakNext atomic.Bool  // the reader's next Next fails
}

func (s *flakySource) Open(ctx context.Context, from uint64) (port.SourceReader, error) {
	for {
		n := s.failOpens.Load()
		if n <= 0 {
			break
		}
		if s.failOpens.CompareAndSwap(n, n-1) {
			s.failed.Add(1)
			return nil, errors.New("injected: open failed (JetStream 503 during an election)")
		}
	}
	r, err := s.Source.Open(ctx, from)
	if err != nil {
		return r, err
	}
	s.opens.Add(1)
	return &flakyReader{SourceReader: r, s: s, deaf: s.deaf.Load()}, nil
}

type flakyReader struct {
	port.SourceReader
	s    *flakySource
	deaf bool
}

func (r *flakyReader) Next(ctx context.Context, max int, wait time.Duration) ([]port.SourceMessage, error) {
	if r.s.breakNext.CompareAndSwap(true, false) {
		return nil, errors.New("injected: reader failed")
	}
	if r.deaf {
		return deafReader{r.SourceReader}.Next(ctx, max, wait)
	}
	return r.SourceReader.Next(ctx, max, wait)
}

// waitProcessed waits until the manager processed n events in all.
func (h *harness) waitProcessed(n uint64) {
	h.t.Helper()
	waitFor(h.t, 20*time.Second, fmt.Sprintf("%d events processed", n), func() bool { return h.m.Status().EventsProcessed >= n })
}

// waitNothingUncommitted waits until no partition holds uncommitted writes.
func (h *harness) waitNothingUncommitted() {
	h.t.Helper()
	waitFor(h.t, 20*time.Second, "every write committed", func() bool {
		for _, ps := range h.m.Status().Partitions {
			if ps.Buffered > 0 || ps.State != status.StateActive {
				return false
			}
		}
		return true
	})
}

// TestReaderReopenFailureKeepsWhatIsBuffered: the reader fails while
// partitions hold uncommitted writes up to the last examined event, and so
// does reopening it; the source is then read again from the committed
// floor, by a reader that delivers nothing for a while. The buffered
// writes must be committed with the position they cover: committed with the
// (lower) position the reader moved back to, their events were processed
// again after a restart and counted twice.
func TestReaderReopenFailureKeepsWhatIsBuffered(t *testing.T) {
	gc := &gatedChangelog{}
	src := &flakySource{}
	h := newHarness(t, manager.Config{Partitions: 2, CommitInterval: 20 * time.Millisecond})
	h.atomic = true
	h.wrapChangelog = func(c port.Changelog) port.Changelog { gc.Changelog = c; return gc }
	h.wrapSource = func(s port.Source) port.Source { src.Source = s; return src }
	h.start()
	want := map[string]int64{}
	h.publishCounts(100, 10, want)
	h.waitCounts(want)

	// Commits are held: a commit is in flight, and the events after it
	// stay in the partitions' buffers.
	gc.close()
	h.publishCounts(10, 10, want)
	waitFor(t, 20*time.Second, "a commit held", func() bool { return gc.held.Load() > 0 })
	h.publishCounts(100, 10, want)
	h.waitProcessed(210)

	opens := src.opens.Load()
	src.deaf.Store(true)
	src.failOpens.Store(1)
	src.breakNext.Store(true)
	waitFor(t, 20*time.Second, "the reader failed, a reopen failed and a new reader opened", func() bool {
		return src.failed.Load() >= 1 && src.opens.Load() > opens
	})
	gc.open()
	h.waitNothingUncommitted()
	must(t, h.stop())

	src.deaf.Store(false)
	h.start()
	h.waitCounts(want)
	h.publishCounts(50, 10, want)
	h.waitCounts(want)
}

// TestActivationWithoutReaderSkipsNothing: two partitions are fenced and
// taken back while opening the source fails. The first one activated has
// no reader; the second one's activation commits every active partition.
// The first one's position must stay where its recovery put it: moved to
// the last event examined by the old reader (far ahead, and its events
// since dropped with the fenced writes), it skipped them for good.
func TestActivationWithoutReaderSkipsNothing(t *testing.T) {
	gc := &gatedChangelog{}
	src := &flakySource{}
	h := newHarness(t, manager.Config{Partitions: 2, CommitInterval: 20 * time.Millisecond})
	h.wrapChangelog = func(c port.Changelog) port.Changelog { gc.Changelog = c; return gc }
	h.wrapSource = func(s port.Source) port.Source { src.Source = s; return src }
	h.start()
	want := map[string]int64{}
	h.publishCounts(100, 10, want)
	h.waitCounts(want)

	gc.close()
	h.publishCounts(200, 10, want)
	h.waitProcessed(300)
	// Another writer (older generation) appends to both logs: the held
	// commits are fenced and both partitions are taken back.
	h.intruder(0, 0, keyIn(0, 2, "intruded"), 1)
	h.intruder(1, 0, keyIn(1, 2, "intruded"), 1)
	src.failOpens.Store(1 << 20)
	failed := src.failed.Load()
	gc.open()
	waitFor(t, 20*time.Second, "both partitions active again, with no reader", func() bool {
		return partitionState(h.m, 0) == status.StateActive && partitionState(h.m, 1) == status.StateActive &&
			src.failed.Load() >= failed+2
	})
	time.Sleep(200 * time.Millisecond) // commits of the active partitions, while no reader reads
	src.failOpens.Store(0)
	h.waitCounts(want)
	h.publishCounts(50, 10, want)
	h.waitCounts(want)
	if n := h.m.Status().SourceGaps; n != 0 {
		t.Errorf("SourceGaps = %d; want 0", n)
	}
}

// lossyChangelog loses the appends of one partition while armed: each
// fails with a timeout and stores nothing, as a request to a paused or
// partitioned stream leader would.
type lossyChangelog struct {
	port.Changelog
	partition int
	armed     atomic.Bool
	lost      atomic.Int32
}

func (c *lossyChangelog) Append(ctx context.Context, p int, expectLast uint64, recs []port.Record, marker port.CommitMarker) (uint64, error) {
	if p == c.partition && c.armed.Load() {
		c.lost.Add(1)
		return 0, fmt.Errorf("injected: %w", nats.ErrTimeout)
	}
	return c.Changelog.Append(ctx, p, expectLast, recs, marker)
}

// TestUnansweredAppendNeverLandsAfterAnotherWriter: a partition's appends
// go unanswered while another writer appends to its log (a new owner took
// it from this paused node). When the appends go through again, this
// writer's retry must not be written after the other's messages, as if it
// still owned the log: it is fenced, replays what the other wrote and takes
// the log over with a marker before writing anything. (The markers share
// one subject per partition, so compaction keeps only the last: the test
// checks what the other's record became instead of the log's layout.)
func TestUnansweredAppendNeverLandsAfterAnotherWriter(t *testing.T) {
	lc := &lossyChangelog{partition: 0}
	h := newHarness(t, manager.Config{Partitions: 2, CommitInterval: 20 * time.Millisecond})
	h.wrapChangelog = func(c port.Changelog) port.Changelog { lc.Changelog = c; return lc }
	h.start()
	want := map[string]int64{}
	h.publishCounts(100, 10, want)
	h.waitCounts(want)

	lc.armed.Store(true)
	before := h.m.Status().EventsProcessed
	h.publishCounts(100, 10, want)
	h.waitProcessed(before + 100)
	waitFor(t, 20*time.Second, "an append of partition 0 lost", func() bool { return lc.lost.Load() > 0 })
	// The other writer resumes from the position committed before.
	intruded := keyIn(0, 2, "intruded")
	intruderEnd := h.intruderAt(0, 0, intruded, 42, committed(h.m)[0])
	lc.armed.Store(false)

	h.waitCounts(want)
	// Written after the other writer's messages, the retry would leave
	// the other's record out of this node's store for good.
	ctx := context.Background()
	if got, ok, err := h.counter.Lookup(ctx, intruded); err != nil || !ok || got != 42 {
		t.Errorf("the other writer's record: got %d, %v, %v; want 42, replayed after the fence", got, ok, err)
	}
	if rp := h.m.Status().Partitions[0].Recovery; rp == nil || rp.From > intruderEnd || rp.Records == 0 {
		t.Errorf("partition 0's last recovery: %+v; want a takeover replaying the other writer's messages (up to %d)", rp, intruderEnd)
	}
	if n := h.m.Status().MarkerRegressions; n != 0 {
		t.Errorf("MarkerRegressions = %d; want 0", n)
	}
}

// flakyCoordinator fails one heartbeat, the failAt-th.
type flakyCoordinator struct {
	port.Coordinator
	beats  atomic.Int32
	failAt int32
}

func (c *flakyCoordinator) Heartbeat(ctx context.Context, st status.MemberState) error {
	if c.beats.Add(1) == c.failAt {
		return errors.New("injected: heartbeat lost")
	}
	return c.Coordinator.Heartbeat(ctx, st)
}

// TestHeartbeatFailureAfterJoining: a node joins its group after two
// heartbeats in a row; one failing later, then two more succeeding, must
// leave it a member (it once signalled the join a second time and crashed).
func TestHeartbeatFailureAfterJoining(t *testing.T) {
	var fc *flakyCoordinator
	h := startGrouped(t, func(g port.Coordinator) port.Coordinator {
		fc = &flakyCoordinator{Coordinator: g, failAt: 3}
		return fc
	})
	waitFor(t, 20*time.Second, "heartbeats after the failed one", func() bool { return fc.beats.Load() >= 7 })
	want := map[string]int64{}
	h.publishCounts(100, 10, want)
	h.waitCounts(want)
}

// failingWatch fails the first fails watches of the group.
type failingWatch struct {
	port.Coordinator
	watches atomic.Int32
	fails   int32
}

func (c *failingWatch) Watch(ctx context.Context) (<-chan port.GroupView, error) {
	if c.watches.Add(1) <= c.fails {
		return nil, errors.New("injected: stream info of KV_app_group: stream not found")
	}
	return c.Coordinator.Watch(ctx)
}

// TestWatchFailureAtStart: a node whose first watches of the group fail
// (a meta leader elected a moment ago answered that the group's bucket
// does not exist) retries, joins and processes (it once stayed out of its
// group for good).
func TestWatchFailureAtStart(t *testing.T) {
	var fw *failingWatch
	h := startGrouped(t, func(g port.Coordinator) port.Coordinator {
		fw = &failingWatch{Coordinator: g, fails: 3}
		return fw
	})
	want := map[string]int64{}
	h.publishCounts(100, 10, want)
	h.waitCounts(want)
	if n := fw.watches.Load(); n != 4 {
		t.Errorf("%d watches, want 4 (3 failed)", n)
	}
}

// startGrouped starts a node of 2 partitions in a group of its own (a
// session timeout of 1 s) whose coordinator is wrap's wrapping of the
// JetStream group.
func startGrouped(t *testing.T, wrap func(port.Coordinator) port.Coordinator) *harness {
	h := newHarness(t, manager.Config{Partitions: 2, CommitInterval: 20 * time.Millisecond, SessionTimeout: time.Second})
	g, err := jetstream.NewGroup(context.Background(), h.js, jetstream.GroupConfig{App: h.app, Node: "n1", SessionTimeout: time.Second})
	must(t, err)
	h.cfg.Coordinator = wrap(g)
	h.start()
	return h
}

// failingHeartbeat fails its failAt-th Heartbeat at once (a write refused
// while the group's stream elects a leader) and records the time each
// call was given.
type failingHeartbeat struct {
	port.Coordinator
	failAt int32
	calls  atomic.Int32
	bounds [8]atomic.Int64 // call n's deadline less its start, for the first calls
}

func (c *failingHeartbeat) Heartbeat(ctx context.Context, st status.MemberState) error {
	n := c.calls.Add(1)
	if d, ok := ctx.Deadline(); ok && int(n) <= len(c.bounds) {
		c.bounds[n-1].Store(int64(time.Until(d)))
	}
	if n == c.failAt {
		return errors.New("injected: nats: no response from stream")
	}
	return c.Coordinator.Heartbeat(ctx, st)
}

// TestHeartbeatAfterFailure: after a failed heartbeat the next one is
// bounded by 200 ms, not half the session timeout (a request sent during
// the group stream's election is never answered, and waiting it out let
// the new leader expire the lease), and the bound is back once one went
// through.
func TestHeartbeatAfterFailure(t *testing.T) {
	fh := &failingHeartbeat{failAt: 4}
	startGrouped(t, func(g port.Coordinator) port.Coordinator {
		fh.Coordinator = g
		return fh
	})
	deadline := time.Now().Add(20 * time.Second)
	for fh.calls.Load() < 6 {
		if time.Now().After(deadline) {
			t.Fatalf("%d heartbeats in 20 s", fh.calls.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	bound := func(n int) time.Duration { return time.Duration(fh.bounds[n-1].Load()) }
	// Session timeout 1 s: half of it is 500 ms.
	if b := bound(3); b <= 300*time.Millisecond {
		t.Errorf("heartbeat 3, before the failure: bound %v, want about 500ms", b)
	}
	if b := bound(5); b > 200*time.Millisecond {
		t.Errorf("heartbeat 5, after the failure: bound %v, want at most 200ms", b)
	}
	if b := bound(6); b <= 300*time.Millisecond {
		t.Errorf("heartbeat 6, after one went through: bound %v, want about 500ms", b)
	}
}

// halfAnsweredChangelog stores partition p's next append while armed, and
// then fails it, as a full disk can after part of a batch was written.
type halfAnsweredChangelog struct {
	port.Changelog
	partition int
	armed     atomic.Bool
}

func (c *halfAnsweredChangelog) Append(ctx context.Context, p int, expectLast uint64, recs []port.Record, marker port.CommitMarker) (uint64, error) {
	if p == c.partition && c.armed.CompareAndSwap(true, false) {
		if _, err := c.Changelog.Append(ctx, p, expectLast, recs, marker); err != nil {
			return 0, err
		}
		return 0, errors.New("injected: insufficient storage after the append was stored")
	}
	return c.Changelog.Append(ctx, p, expectLast, recs, marker)
}

// TestFailedAppendThatWasStored: an append that fails after its messages
// were stored fences the partition at its next commit (the log no longer
// ends where this writer left it), and the log says so as what it is, not
// as another writer; the partition is taken back from the log and every
// event counts once.
func TestFailedAppendThatWasStored(t *testing.T) {
	hc := &halfAnsweredChangelog{partition: 0}
	logs := &syncBuffer{}
	h := newHarness(t, manager.Config{Partitions: 2, CommitInterval: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	h.wrapChangelog = func(c port.Changelog) port.Changelog { hc.Changelog = c; return hc }
	h.start()
	want := map[string]int64{}
	h.publishCounts(100, 10, want)
	h.waitCounts(want)

	hc.armed.Store(true)
	for range 5 {
		h.publishCounts(40, 10, want)
		time.Sleep(50 * time.Millisecond)
	}
	h.waitCounts(want)
	if hc.armed.Load() {
		t.Fatal("no append of partition 0 was failed")
	}
	out := logs.String()
	if !strings.Contains(out, "its changelog grew after an append of this node failed") {
		t.Errorf("no log line says the partition's own failed append moved its log:\n%s", out)
	}
	must(t, h.stop())
	h.start()
	h.publishCounts(20, 10, want)
	h.waitCounts(want)
}
