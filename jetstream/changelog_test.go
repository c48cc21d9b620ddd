package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/jetstream/jstest"
	"github.com/edgetables/edgetables/manager/port"
)

const app = "testapp"

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newChangelog(t testing.TB, js natsjs.JetStream, parts int) *jetstream.Changelog {
	t.Helper()
	cl, err := jetstream.NewChangelog(testCtx(t), js, jetstream.ChangelogConfig{App: app, Partitions: parts})
	if err != nil {
		t.Fatalf("NewChangelog: %v", err)
	}
	return cl
}

// replayAll replays p from..until and returns the entries, checking batch
// sizes and order.
func replayAll(t testing.TB, cl *jetstream.Changelog, p int, from, until uint64, batch int) []port.Entry {
	t.Helper()
	var got []port.Entry
	err := cl.Replay(testCtx(t), p, from, until, batch, func(es []port.Entry) error {
		if len(es) == 0 || len(es) > batch {
			t.Errorf("batch of %d entries, batch size %d", len(es), batch)
		}
		got = append(got, es...)
		return nil
	})
	if err != nil {
		t.Fatalf("Replay(%d, %d, %d): %v", p, from, until, err)
	}
	for i := 1; i < len(got); i++ {
		if got[i].Seq <= got[i-1].Seq {
			t.Fatalf("entries out of order: %d after %d", got[i].Seq, got[i-1].Seq)
		}
	}
	return got
}

func mustAppend(t testing.TB, cl *jetstream.Changelog, p int, expect uint64, recs []port.Record, m port.CommitMarker) uint64 {
	t.Helper()
	last, err := cl.Append(testCtx(t), p, expect, recs, m)
	if err != nil {
		t.Fatalf("Append(p=%d, expect=%d, %d records): %v", p, expect, len(recs), err)
	}
	if want := expect + uint64(len(recs)) + 1; last != want {
		t.Fatalf("Append returned %d, want %d", last, want)
	}
	return last
}

func TestAppendReplayRoundTrip(t *testing.T) {
	_, _, js := jstest.Start(t)
	cl := newChangelog(t, js, 2)
	recs := []port.Record{
		{Table: "t1", Key: []byte("a"), Value: []byte("1")},
		{Table: "t1", Key: []byte{}, Value: []byte("empty key")},
		{Table: "t2", Key: []byte("a.b*>"), Value: []byte{}},
		{Table: "t1", Key: []byte("gone"), Delete: true},
		{Table: "t2", Key: []byte{0, 0xff}, Value: []byte("bin")},
	}
	marker := port.CommitMarker{SourceSeq: 42, Node: "n1", Generation: 7}
	last := mustAppend(t, cl, 1, 0, recs, marker)

	st, err := cl.State(testCtx(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	if st.First != 1 || st.Last != last || st.Epoch == "" {
		t.Fatalf("State = %+v, want 1..%d with an epoch", st, last)
	}
	if _, err := time.Parse(time.RFC3339Nano, st.Epoch); err != nil {
		t.Errorf("epoch %q: %v", st.Epoch, err)
	}
	for _, batch := range []int{1, 2, 100} {
		got := replayAll(t, cl, 1, 1, last, batch)
		if len(got) != len(recs)+1 {
			t.Fatalf("batch %d: %d entries, want %d", batch, len(got), len(recs)+1)
		}
		for i, r := range recs {
			e := got[i]
			if e.Seq != uint64(i+1) || e.Commit != nil {
				t.Fatalf("entry %d = %+v", i, e)
			}
			if r.Delete {
				r.Value = nil
			}
			if e.Record.Value == nil {
				e.Record.Value = nil
			}
			if e.Record.Table != r.Table || string(e.Record.Key) != string(r.Key) || string(e.Record.Value) != string(r.Value) || e.Record.Delete != r.Delete {
				t.Errorf("entry %d = %+v, want %+v", i, e.Record, r)
			}
		}
		if m := got[len(recs)].Commit; m == nil || *m != marker || got[len(recs)].Seq != last {
			t.Errorf("marker entry = %+v, want %+v at %d", got[len(recs)], marker, last)
		}
	}
	// Partition 0 is untouched.
	if got := replayAll(t, cl, 0, 1, 100, 10); len(got) != 0 {
		t.Errorf("partition 0: %d entries", len(got))
	}
	if _, err := cl.State(testCtx(t), 2); !errors.Is(err, jetstream.ErrBadPartition) {
		t.Errorf("State(2) = %v, want ErrBadPartition", err)
	}
}

func TestAppendRejectsBadRecords(t *testing.T) {
	_, _, js := jstest.Start(t)
	cl := newChangelog(t, js, 1)
	ctx := testCtx(t)
	for _, tt := range []struct {
		rec  port.Record
		want error
	}{
		{port.Record{Table: "a.b", Key: []byte("k")}, jetstream.ErrBadName},
		{port.Record{Table: "", Key: []byte("k")}, jetstream.ErrBadName},
		{port.Record{Table: "t", Key: make([]byte, jetstream.MaxKeyLen+1)}, jetstream.ErrKeyTooLong},
	} {
		recs := []port.Record{{Table: "ok", Key: []byte("k")}, tt.rec}
		if _, err := cl.Append(ctx, 0, 0, recs, port.CommitMarker{}); !errors.Is(err, tt.want) {
			t.Errorf("Append(%+v) = %v, want %v", tt.rec.Table, err, tt.want)
		}
	}
	if st, _ := cl.State(ctx, 0); st.Last != 0 {
		t.Errorf("a refused Append stored messages: %+v", st)
	}
	// The longest key goes through.
	mustAppend(t, cl, 0, 0, []port.Record{{Table: "t", Key: make([]byte, jetstream.MaxKeyLen)}}, port.CommitMarker{})
}

func TestCompaction(t *testing.T) {
	_, _, js := jstest.Start(t)
	cl := newChangelog(t, js, 1)
	var last uint64
	for i := 1; i <= 3; i++ {
		recs := []port.Record{{Table: "t", Key: []byte("k"), Value: fmt.Appendf(nil, "v%d", i)}}
		last = mustAppend(t, cl, 0, last, recs, port.CommitMarker{SourceSeq: uint64(i)})
	}
	st, err := cl.State(testCtx(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	if st.First != 5 || st.Last != 6 {
		t.Errorf("State = %+v, want 5..6", st)
	}
	got := replayAll(t, cl, 0, 1, last, 10)
	if len(got) != 2 || string(got[0].Record.Value) != "v3" || got[0].Seq != 5 || got[1].Commit == nil || got[1].Commit.SourceSeq != 3 {
		t.Fatalf("replay of compacted log = %+v", got)
	}
}

func TestReplayEdgeCases(t *testing.T) {
	_, _, js := jstest.Start(t)
	cl := newChangelog(t, js, 2)
	ctx := testCtx(t)
	// Partition 1: keys a, b, c at 1..3, marker 4; then a again (5), marker 6.
	// Live: b@2, c@3, a@5, marker@6; gaps at 1 and 4.
	last := mustAppend(t, cl, 1, 0, []port.Record{
		{Table: "t", Key: []byte("a"), Value: []byte("a1")},
		{Table: "t", Key: []byte("b"), Value: []byte("b1")},
		{Table: "t", Key: []byte("c"), Value: []byte("c1")},
	}, port.CommitMarker{SourceSeq: 1})
	last = mustAppend(t, cl, 1, last, []port.Record{{Table: "t", Key: []byte("a"), Value: []byte("a2")}}, port.CommitMarker{SourceSeq: 2})
	if last != 6 {
		t.Fatalf("last = %d", last)
	}
	seqs := func(es []port.Entry) []uint64 {
		var out []uint64
		for _, e := range es {
			out = append(out, e.Seq)
		}
		return out
	}
	tests := []struct {
		name        string
		p           int
		from, until uint64
		want        []uint64
	}{
		{"empty log", 0, 1, 10, nil},
		{"empty log from 0", 0, 0, 0, nil},
		{"whole log", 1, 1, 6, []uint64{2, 3, 5, 6}},
		{"from 0", 1, 0, 6, []uint64{2, 3, 5, 6}},
		{"from beyond end", 1, 7, 100, nil},
		{"until before from", 1, 5, 4, nil},
		{"from inside a gap", 1, 4, 6, []uint64{5, 6}},
		{"from in the first gap", 1, 1, 2, []uint64{2}},
		{"until in a gap", 1, 1, 4, []uint64{2, 3}},
		{"from and until in one gap", 1, 4, 4, nil},
		{"until beyond end", 1, 3, 1000, []uint64{3, 5, 6}},
		{"single entry", 1, 5, 5, []uint64{5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := seqs(replayAll(t, cl, tt.p, tt.from, tt.until, 2))
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Replay(%d, %d, %d) = %v, want %v", tt.p, tt.from, tt.until, got, tt.want)
			}
		})
	}

	// The messages at the end removed (not by compaction): Last stays 6
	// but nothing is left at or after 5. Replay must not wait.
	st, err := js.Stream(ctx, cl.Stream(1))
	if err != nil {
		t.Fatal(err)
	}
	for _, seq := range []uint64{5, 6} {
		if err := st.DeleteMsg(ctx, seq); err != nil {
			t.Fatal(err)
		}
	}
	if got := seqs(replayAll(t, cl, 1, 5, 6, 2)); got != nil {
		t.Errorf("Replay over deleted tail = %v", got)
	}
	if got := seqs(replayAll(t, cl, 1, 1, 100, 2)); !reflect.DeepEqual(got, []uint64{2, 3}) {
		t.Errorf("Replay with deleted tail = %v", got)
	}

	// An error from fn stops the replay and is returned.
	stop := errors.New("stop")
	if err := cl.Replay(ctx, 1, 1, 6, 1, func([]port.Entry) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("Replay with failing fn = %v", err)
	}
	// A cancelled context ends it.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := cl.Replay(cctx, 1, 1, 6, 1, func([]port.Entry) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("Replay with cancelled ctx = %v", err)
	}
}

// TestReplaySkipsForeignMessages: a message in a changelog that is no
// record or marker (put there by a client allowed the app's subjects)
// is passed on as an entry of no table, which readers skip, instead of
// stopping the replay (and with it the partition's recovery) for good.
func TestReplaySkipsForeignMessages(t *testing.T) {
	_, _, js := jstest.Start(t)
	cl := newChangelog(t, js, 1)
	ctx := testCtx(t)
	subjects := []string{
		app + ".changelog.0.t.!!",
		app + ".changelog.0.t.YQ==",
		app + ".changelog.0.nodot",
		app + ".changelog.0.a.b.YQ",
		jetstream.CommitSubject(app, 0), // a garbled marker
	}
	for _, subj := range subjects {
		t.Run(subj, func(t *testing.T) {
			ack, err := js.PublishMsg(ctx, &nats.Msg{Subject: subj, Data: []byte("{")})
			if err != nil {
				t.Fatal(err)
			}
			var got []port.Entry
			// A batch size beyond any memory (a huge
			// --recovery-buffer-size) is bounded by the records to
			// replay: it used to panic in makeslice.
			err = cl.Replay(ctx, 0, ack.Sequence, ack.Sequence, math.MaxInt, func(es []port.Entry) error {
				got = append(got, es...)
				return nil
			})
			if err != nil {
				t.Fatalf("Replay = %v", err)
			}
			if len(got) != 1 || got[0].Seq != ack.Sequence || got[0].Record.Table != "" || got[0].Commit != nil {
				t.Fatalf("Replay gave %+v, want one entry of no table at %d", got, ack.Sequence)
			}
		})
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !contains(s, sub) {
			return false
		}
	}
	return true
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func TestFencing(t *testing.T) {
	_, _, js := jstest.Start(t)
	cl := newChangelog(t, js, 1)
	ctx := testCtx(t)
	recs := []port.Record{{Table: "t", Key: []byte("a"), Value: []byte("1")}, {Table: "t", Key: []byte("b"), Value: []byte("1")}}
	last := mustAppend(t, cl, 0, 0, recs, port.CommitMarker{Node: "old"})

	// A new owner takes over from the state it reads and writes.
	st, _ := cl.State(ctx, 0)
	newLast := mustAppend(t, cl, 0, st.Last, recs, port.CommitMarker{Node: "new"})

	// The old owner still believes the log ends at last.
	_, err := cl.Append(ctx, 0, last, recs, port.CommitMarker{Node: "old"})
	if !errors.Is(err, port.ErrFenced) {
		t.Fatalf("stale Append = %v, want ErrFenced", err)
	}
	if !contains(err.Error(), "10071") {
		t.Errorf("stale Append error %v does not name the server's 10071", err)
	}
	// Nothing of the stale writer was stored.
	st, _ = cl.State(ctx, 0)
	if st.Last != newLast {
		t.Errorf("log ends at %d after fenced Append, want %d", st.Last, newLast)
	}
	// A writer expecting a sequence beyond the end is fenced too.
	if _, err := cl.Append(ctx, 0, newLast+5, nil, port.CommitMarker{}); !errors.Is(err, port.ErrFenced) {
		t.Errorf("Append beyond end = %v, want ErrFenced", err)
	}
}

// TestFencedWriterLandsNothing: a paused writer's commit must store none
// of its messages once another writer grew the log, even where a later
// message's expected sequence matches the grown log (the new owner wrote
// exactly one marker; a commit's second batch would expect the end of its
// first one).
func TestFencedWriterLandsNothing(t *testing.T) {
	_, _, js := jstest.Start(t)
	cl := newChangelog(t, js, 1)
	ctx := testCtx(t)
	recs := func(n int, prefix string) []port.Record {
		out := make([]port.Record, n)
		for i := range out {
			out[i] = port.Record{Table: "t", Key: fmt.Appendf(nil, "%s-%d", prefix, i), Value: []byte("v")}
		}
		return out
	}
	for _, tc := range []struct {
		name       string
		taken, old int // messages the new owner writes, records the old one tries
	}{
		{"one marker, small commit", 0, 5},
		{"a batch's worth, large commit", jetstream.MaxAtomicBatch - 1, 2 * jetstream.MaxAtomicBatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, _ := cl.State(ctx, 0)
			zombie := st.Last
			took := mustAppend(t, cl, 0, zombie, recs(tc.taken, "new"), port.CommitMarker{Node: "new", SourceSeq: 10})
			if _, err := cl.Append(ctx, 0, zombie, recs(tc.old, "old"), port.CommitMarker{Node: "old", SourceSeq: 5}); !errors.Is(err, port.ErrFenced) {
				t.Fatalf("paused writer's Append = %v, want ErrFenced", err)
			}
			if st, _ := cl.State(ctx, 0); st.Last != took {
				t.Fatalf("log ends at %d after the fenced Append, want %d (the new owner's end)", st.Last, took)
			}
		})
	}
}

func TestAppendLargePipelined(t *testing.T) {
	_, _, js := jstest.Start(t)
	cl := newChangelog(t, js, 1)
	const n = 10000
	recs := make([]port.Record, n)
	for i := range recs {
		recs[i] = port.Record{Table: "t", Key: fmt.Appendf(nil, "key-%d", i), Value: make([]byte, 100)}
	}
	last := mustAppend(t, cl, 0, 0, recs, port.CommitMarker{SourceSeq: 1})
	last = mustAppend(t, cl, 0, last, recs, port.CommitMarker{SourceSeq: 2})
	if got := replayAll(t, cl, 0, 1, last, 1000); len(got) != n+1 {
		t.Errorf("replay after compaction: %d entries, want %d", len(got), n+1)
	}
	// A stale second writer is fenced on its first message.
	if _, err := cl.Append(testCtx(t), 0, n+1, recs, port.CommitMarker{}); !errors.Is(err, port.ErrFenced) {
		t.Errorf("stale 10k Append = %v, want ErrFenced", err)
	}
	if st, _ := cl.State(testCtx(t), 0); st.Last != last {
		t.Errorf("log ends at %d, want %d", st.Last, last)
	}
}

func TestAppendConcurrentPartitions(t *testing.T) {
	_, _, js := jstest.Start(t)
	const parts, rounds, n = 8, 5, 500
	cl := newChangelog(t, js, parts)
	var wg sync.WaitGroup
	errs := make(chan error, parts)
	for p := range parts {
		wg.Go(func() {
			var last uint64
			for r := range rounds {
				recs := make([]port.Record, n)
				for i := range recs {
					recs[i] = port.Record{Table: "t", Key: fmt.Appendf(nil, "%d-%d", r, i), Value: []byte("v")}
				}
				var err error
				if last, err = cl.Append(testCtx(t), p, last, recs, port.CommitMarker{SourceSeq: uint64(r)}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for p := range parts {
		if st, _ := cl.State(testCtx(t), p); st.Last != rounds*(n+1) {
			t.Errorf("partition %d ends at %d", p, st.Last)
		}
	}
}

func TestNewChangelogIdempotent(t *testing.T) {
	_, _, js := jstest.Start(t)
	ctx := testCtx(t)
	cl := newChangelog(t, js, 3)
	last := mustAppend(t, cl, 2, 0, []port.Record{{Table: "t", Key: []byte("k")}}, port.CommitMarker{})
	st1, _ := cl.State(ctx, 2)
	cl2 := newChangelog(t, js, 3)
	st2, err := cl2.State(ctx, 2)
	if err != nil || st2 != st1 || st2.Last != last {
		t.Errorf("state after second NewChangelog = %+v, %v; want %+v", st2, err, st1)
	}
	info, err := js.Stream(ctx, cl.Stream(2))
	if err != nil {
		t.Fatal(err)
	}
	c := info.CachedInfo().Config
	if !c.AllowAtomicPublish || !c.AllowMsgTTL || c.SubjectDeleteMarkerTTL != 0 || c.MaxMsgsPerSubject != 1 || c.Storage != natsjs.FileStorage || c.Discard != natsjs.DiscardOld {
		t.Errorf("stream config = %+v", c)
	}
	if _, err := jetstream.NewChangelog(ctx, js, jetstream.ChangelogConfig{App: "bad.app", Partitions: 1}); !errors.Is(err, jetstream.ErrBadName) {
		t.Errorf("bad app: %v", err)
	}
}

func TestRestartKeepsDataAndEpoch(t *testing.T) {
	dir := t.TempDir()
	srv, nc, js := jstest.StartIn(t, dir)
	cl := newChangelog(t, js, 1)
	last := mustAppend(t, cl, 0, 0, []port.Record{{Table: "t", Key: []byte("k"), Value: []byte("v")}}, port.CommitMarker{SourceSeq: 9})
	st1, err := cl.State(testCtx(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
	srv.Shutdown()
	srv.Shutdown() // idempotent

	_, _, js = jstest.StartIn(t, dir)
	cl = newChangelog(t, js, 1)
	st2, err := cl.State(testCtx(t), 0)
	if err != nil || st2 != st1 {
		t.Fatalf("state after restart = %+v, %v; want %+v", st2, err, st1)
	}
	got := replayAll(t, cl, 0, 1, last, 10)
	if len(got) != 2 || string(got[0].Record.Value) != "v" || got[1].Commit.SourceSeq != 9 {
		t.Errorf("replay after restart = %+v", got)
	}
}

func TestEpochChangesOnRecreate(t *testing.T) {
	_, _, js := jstest.Start(t)
	ctx := testCtx(t)
	cl := newChangelog(t, js, 1)
	mustAppend(t, cl, 0, 0, nil, port.CommitMarker{})
	st1, _ := cl.State(ctx, 0)
	if err := js.DeleteStream(ctx, cl.Stream(0)); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.State(ctx, 0); !errors.Is(err, natsjs.ErrStreamNotFound) {
		t.Errorf("State of a deleted stream = %v", err)
	}
	cl = newChangelog(t, js, 1)
	st2, _ := cl.State(ctx, 0)
	if st2.Epoch == st1.Epoch || st2.Last != 0 || st2.First != 0 {
		t.Errorf("state after recreate = %+v, before %+v", st2, st1)
	}
}
