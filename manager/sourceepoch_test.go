package manager_test

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/manager"
	"github.com/edgetables/edgetables/manager/port"
)

// TestSourceRecreatedUnderRunningNode: the source stream deleted and created
// again under a running node numbers its events from 1 again; they are all
// processed, exactly once, also after a restart. They used to be skipped
// for ever (their sequences were at or below every committed position).
func TestSourceRecreatedUnderRunningNode(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, manager.Config{})
	h.start()
	want := map[string]int64{}
	h.publishCounts(300, 100, want)
	h.waitCounts(want)

	must(t, h.js.DeleteStream(ctx, jetstream.SourceStream(h.app)))
	_, err := jetstream.NewSource(ctx, h.js, jetstream.SourceConfig{App: h.app, Subjects: []string{"ev.*", "bad.>"}, Consumer: "other"})
	must(t, err)
	h.publishCounts(100, 100, want)
	h.waitCounts(want)
	if st := h.m.Status(); st.SourceResets == 0 {
		t.Errorf("source resets = 0, want the partitions' moves counted")
	}

	// The new positions are committed with the new epoch: a restart
	// neither skips nor counts again.
	must(t, h.stop())
	h.start()
	h.publishCounts(100, 100, want)
	h.waitCounts(want)
	time.Sleep(300 * time.Millisecond) // a double count would show by now
	h.waitCounts(want)
}

// TestSourceLostTail: commit markers claim a source position beyond the
// source's last sequence (the source lost its tail in a power cut under
// --sync interval while the markers survived). The partitions resume after
// the source's last sequence: the events published after the loss are
// processed. They used to be skipped until the source passed the old
// position.
func TestSourceLostTail(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, manager.Config{Partitions: 2})
	h.start()
	want := map[string]int64{}
	h.publishCounts(100, 10, want)
	h.waitCounts(want)
	must(t, h.stop())

	// Markers written by hand, as a later commit would have: position
	// 150 of the same source stream, which ends at 100.
	st, err := h.js.Stream(ctx, jetstream.SourceStream(h.app))
	must(t, err)
	info := st.CachedInfo()
	if info.State.LastSeq != 100 {
		t.Fatalf("source ends at %d, want 100", info.State.LastSeq)
	}
	epoch := info.Created.UTC().Format(time.RFC3339Nano)
	for p := 0; p < 2; p++ {
		cl, err := h.js.Stream(ctx, jetstream.ChangelogStream(h.app, p))
		must(t, err)
		data, _ := json.Marshal(map[string]any{"source_seq": 150, "node": "n1", "source_epoch": epoch})
		_, err = h.js.Publish(ctx, jetstream.CommitSubject(h.app, p), data,
			natsjs.WithExpectLastSequence(cl.CachedInfo().State.LastSeq))
		must(t, err)
	}

	h.start()
	h.publishCounts(30, 10, want)
	h.waitCounts(want)
	if st := h.m.Status(); st.SourceResets != 2 {
		t.Errorf("source resets = %d, want 2 (one per partition)", st.SourceResets)
	}
}

// staleSource answers its next `stale` State calls with a last sequence one
// below the stream's: what a stream leader elected a moment ago answered.
type staleSource struct {
	port.Source
	stale atomic.Int32
}

func (s *staleSource) State(ctx context.Context) (port.SourceState, error) {
	st, err := s.Source.State(ctx)
	if err == nil && s.stale.Add(-1) >= 0 && st.Last > 0 {
		st.Last--
	}
	return st, err
}

// TestStaleSourceStateMovesNothing: one read of the source's state below
// the committed position (a stream leader elected a moment ago, seen in a
// three-process cluster) must not be taken for a lost tail, at takeover or
// while processing: positions moved back on it counted the last event
// twice and wrote commit markers that went back.
func TestStaleSourceStateMovesNothing(t *testing.T) {
	src := &staleSource{}
	h := newHarness(t, manager.Config{Partitions: 2, CommitInterval: 20 * time.Millisecond})
	h.wrapSource = func(s port.Source) port.Source { src.Source = s; return src }
	h.start()
	want := map[string]int64{}
	h.publishCounts(100, 10, want)
	h.waitCounts(want)

	src.stale.Store(1) // the next periodic check reads a stale state
	time.Sleep(6 * time.Second)
	h.waitCounts(want)
	must(t, h.stop())

	src.stale.Store(2) // both takeovers read a stale state
	h.start()
	h.publishCounts(20, 10, want)
	h.waitCounts(want)
	if st := h.m.Status(); st.SourceResets != 0 || st.MarkerRegressions != 0 {
		t.Errorf("source resets %d, marker regressions %d; want 0 and 0", st.SourceResets, st.MarkerRegressions)
	}
}

// leaderlessSource plays a source stream whose leader died: while down is
// set, State waits for its context to end, as a stream-info request that
// nobody answers does until JetStream elects a new leader.
type leaderlessSource struct {
	port.Source
	down atomic.Bool
	// longest is the longest wait a State call was given while down, in
	// nanoseconds (until its context's deadline), the trim's aside: it
	// runs on a goroutine of its own and gives its reads 5 s.
	longest atomic.Int64
}

func (s *leaderlessSource) State(ctx context.Context) (port.SourceState, error) {
	if s.down.Load() {
		if d, ok := ctx.Deadline(); ok {
			wait := int64(time.Until(d))
			for old := s.longest.Load(); wait < int64(4*time.Second) && wait > old && !s.longest.CompareAndSwap(old, wait); old = s.longest.Load() {
			}
		} else {
			s.longest.Store(int64(time.Hour)) // no bound at all
		}
		<-ctx.Done()
		return port.SourceState{}, ctx.Err()
	}
	return s.Source.State(ctx)
}

// TestTakeoverDoesNotWaitForLeaderlessSource: a partition's takeover reads
// the source's state to check its position, and a source stream whose
// leader died with the previous owner answers nothing for the 4–9 s of its
// election. The takeover gave that read 2 s, which was most of a failover
// with a standby; it now gives it takeoverSourceWait (500 ms) and leaves the
// check to the processing goroutine, whose own reads wait at most 1 s.
// Fails with the old 2-s waits. Takeovers of the next takeoverSourceRest
// skip the read: four partitions taken over one after the other waited
// 500 ms each.
func TestTakeoverDoesNotWaitForLeaderlessSource(t *testing.T) {
	src := &leaderlessSource{}
	h := newHarness(t, manager.Config{Partitions: 4, CommitInterval: 20 * time.Millisecond})
	h.wrapSource = func(s port.Source) port.Source { src.Source = s; return src }
	h.start()
	want := map[string]int64{}
	h.publishCounts(100, 10, want)
	h.waitCounts(want)
	must(t, h.stop())

	src.down.Store(true)
	m := h.start()
	var first, last time.Time
	for _, rp := range m.RecoveryProgress() {
		if rp.Ended.IsZero() {
			t.Fatalf("partition %d: recovery not ended although the manager is ready", rp.Partition)
		}
		if first.IsZero() || rp.Started.Before(first) {
			first = rp.Started
		}
		if rp.Ended.After(last) {
			last = rp.Ended
		}
		// The old wait alone was 2 s; the new one is 500 ms, and an empty
		// tail replays in milliseconds.
		if took := rp.Ended.Sub(rp.Started); took >= 1500*time.Millisecond {
			t.Errorf("partition %d: takeover took %s with the source's leader gone, want < 1.5s (it waited for the source)", rp.Partition, took)
		}
	}
	if took := last.Sub(first); took >= 1200*time.Millisecond {
		t.Errorf("the takeovers of 4 partitions took %s with the source's leader gone, want < 1.2s (each waited for the source)", took)
	}
	// The processing goroutine, which also applies new assignments, reads
	// the source's state every 5 s and when the reader is silent; none of
	// those reads may hold it longer than a second. They were given 2 s each.
	time.Sleep(6 * time.Second)
	if longest := time.Duration(src.longest.Load()); longest > 1100*time.Millisecond {
		t.Errorf("a read of the source's state was given %s with the source's leader gone, want at most 1s", longest.Round(time.Millisecond))
	}
	src.down.Store(false)
	h.publishCounts(50, 10, want)
	h.waitCounts(want)
}
