package jetstream_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/manager/port"
)

// startBatchServer starts an embedded server whose max_batch_size is
// maxBatch (0: StartServer's default), and connects to it.
func startBatchServer(t *testing.T, maxBatch int) (*jetstream.Server, natsjs.JetStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := jetstream.StartServer(ctx, jetstream.ServerConfig{Name: "batch", Listen: "127.0.0.1:0", StoreDir: t.TempDir(),
		MaxAtomicBatch: maxBatch, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := srv.Connect(t.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return srv, js
}

// TestLargeAtomicCommit: on an embedded server, which accepts
// EmbeddedMaxAtomicBatch messages per atomic batch, an exactly-once commit
// of up to that many messages is stored all together with its marker, or
// none of it (abandoned before its commit, or fenced), and one message
// more is refused before anything is sent.
func TestLargeAtomicCommit(t *testing.T) {
	srv, js := startBatchServer(t, 0)
	if got := srv.MaxAtomicBatch(); got != jetstream.EmbeddedMaxAtomicBatch {
		t.Fatalf("embedded server's MaxAtomicBatch = %d, want %d", got, jetstream.EmbeddedMaxAtomicBatch)
	}
	abandon := errors.New("abandoned")
	var failNext bool
	cl, err := jetstream.NewChangelog(testCtx(t), js, jetstream.ChangelogConfig{App: "big", Partitions: 1, Atomic: true,
		MaxBatch: srv.MaxAtomicBatch(), BeforeCommit: func(int, int) error {
			if failNext {
				failNext = false
				return abandon
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	if got := cl.MaxBatch(); got != jetstream.EmbeddedMaxAtomicBatch {
		t.Fatalf("MaxBatch = %d, want %d", got, jetstream.EmbeddedMaxAtomicBatch)
	}
	maxRecords, capacity := jetstream.CommitLimits(true, cl.MaxBatch())
	if capacity != jetstream.EmbeddedMaxAtomicBatch-1 || maxRecords >= capacity || maxRecords <= jetstream.CommitCapacity {
		t.Fatalf("CommitLimits = %d, %d; want a capacity of %d and a start below it, above %d",
			maxRecords, capacity, jetstream.EmbeddedMaxAtomicBatch-1, jetstream.CommitCapacity)
	}
	ctx := testCtx(t)
	// The probe stored nothing.
	if st, err := cl.State(ctx, 0); err != nil || st.Last != 0 {
		t.Fatalf("log after NewChangelog: %+v, %v; want empty", st, err)
	}
	// A full batch: capacity records and the marker.
	last := mustAppend(t, cl, 0, 0, atomicRecords(capacity, "a"), port.CommitMarker{SourceSeq: 1})
	if last != uint64(capacity+1) {
		t.Fatalf("last = %d, want %d", last, capacity+1)
	}
	es := replayAll(t, cl, 0, 1, last, 2000)
	if len(es) != capacity+1 || es[capacity].Commit == nil || es[capacity].Commit.SourceSeq != 1 {
		t.Fatalf("replayed %d entries, last %+v; want %d ending with the marker", len(es), es[len(es)-1], capacity+1)
	}
	for _, tc := range []struct {
		name   string
		expect uint64 // where the writer expects the log to end
		fail   bool   // BeforeCommit abandons the batch
		want   error
	}{
		{"one message more than a batch", last, false, jetstream.ErrBatchTooLarge},
		{"abandoned before its commit", last, true, abandon},
		{"fenced", last - 1, false, port.ErrFenced},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := 5000
			if tc.want == jetstream.ErrBatchTooLarge {
				n = capacity + 1
			}
			failNext = tc.fail
			if _, err := cl.Append(ctx, 0, tc.expect, atomicRecords(n, "z"), port.CommitMarker{SourceSeq: 2}); !errors.Is(err, tc.want) {
				t.Fatalf("Append of %d records = %v, want %v", n, err, tc.want)
			}
			if st, _ := cl.State(ctx, 0); st.Last != last {
				t.Fatalf("log ends at %d after the refused Append, want %d: part of it was stored", st.Last, last)
			}
		})
	}
	// The partition is not wedged: the next commit goes through.
	last = mustAppend(t, cl, 0, last, atomicRecords(5000, "b"), port.CommitMarker{SourceSeq: 3})
	if last != uint64(capacity+1+5001) {
		t.Fatalf("last = %d, want %d", last, capacity+1+5001)
	}
}

// TestBatchSizeLearned: a changelog on a server left at a smaller
// max_batch_size (a server given with --nats-url, a node of an older
// edgetables) learns that size when it is created, whatever it asked for,
// and its commits then fit it.
func TestBatchSizeLearned(t *testing.T) {
	for _, tc := range []struct {
		name           string
		server, wanted int
		want           int
	}{
		{"server at the default, larger wanted", jetstream.MaxAtomicBatch, jetstream.EmbeddedMaxAtomicBatch, jetstream.MaxAtomicBatch},
		{"server below the default, the default wanted", 300, jetstream.MaxAtomicBatch, 300},
		{"server above what is wanted", jetstream.EmbeddedMaxAtomicBatch, 2000, 2000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, js := startBatchServer(t, tc.server)
			cl, err := jetstream.NewChangelog(testCtx(t), js, jetstream.ChangelogConfig{App: "learn", Partitions: 2, Atomic: true, MaxBatch: tc.wanted})
			if err != nil {
				t.Fatal(err)
			}
			if got := cl.MaxBatch(); got != tc.want {
				t.Fatalf("MaxBatch = %d, want %d", got, tc.want)
			}
			_, capacity := jetstream.CommitLimits(true, cl.MaxBatch())
			ctx := testCtx(t)
			if _, err := cl.Append(ctx, 1, 0, atomicRecords(capacity+1, "x"), port.CommitMarker{}); !errors.Is(err, jetstream.ErrBatchTooLarge) {
				t.Fatalf("Append of %d records = %v, want ErrBatchTooLarge", capacity+1, err)
			}
			last := mustAppend(t, cl, 1, 0, atomicRecords(capacity, "k"), port.CommitMarker{SourceSeq: 1})
			if last != uint64(capacity+1) {
				t.Fatalf("last = %d, want %d", last, capacity+1)
			}
		})
	}
}

// TestBatchSizeProbeStoresNothing: the probe is refused by the server
// whatever the answer, also on a stream holding messages, so the log never
// holds it.
func TestBatchSizeProbeStoresNothing(t *testing.T) {
	_, js := startBatchServer(t, jetstream.MaxAtomicBatch)
	ctx := testCtx(t)
	cfg := jetstream.ChangelogConfig{App: "probe", Partitions: 1, Atomic: true}
	cl, err := jetstream.NewChangelog(ctx, js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	last := mustAppend(t, cl, 0, 0, atomicRecords(3, "a"), port.CommitMarker{SourceSeq: 1})
	for _, wanted := range []int{0, 500, jetstream.EmbeddedMaxAtomicBatch} { // accepted, accepted, too large
		cfg.MaxBatch = wanted
		if _, err := jetstream.NewChangelog(ctx, js, cfg); err != nil {
			t.Fatal(err)
		}
	}
	if st, _ := cl.State(ctx, 0); st.Last != last {
		t.Fatalf("log ends at %d after the probes, want %d", st.Last, last)
	}
	if _, err := jetstream.NewChangelog(ctx, js, jetstream.ChangelogConfig{App: "probe", Partitions: 1, MaxBatch: 1}); err == nil {
		t.Error("NewChangelog with MaxBatch 1: no error")
	}
}
