package jetstream_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/jetstream/jstest"
	"github.com/edgetables/edgetables/manager/port"
)

// TestFollow: a follower gets what the log holds from its start, then
// every append as it comes, in order, and returns nil when its context
// ends.
func TestFollow(t *testing.T) {
	_, _, js := jstest.Start(t)
	cl := newChangelog(t, js, 1)
	recs := func(from, n int) []port.Record {
		out := make([]port.Record, n)
		for i := range out {
			out[i] = port.Record{Table: "t", Key: fmt.Appendf(nil, "k%d", from+i), Value: []byte("v")}
		}
		return out
	}
	last := mustAppend(t, cl, 0, 0, recs(0, 30), port.CommitMarker{SourceSeq: 1})

	ctx, cancel := context.WithCancel(context.Background())
	var (
		mu   sync.Mutex
		seqs []uint64
	)
	done := make(chan error, 1)
	go func() {
		done <- cl.Follow(ctx, 0, 1, 7, func(es []port.Entry) error {
			mu.Lock()
			defer mu.Unlock()
			for _, e := range es {
				seqs = append(seqs, e.Seq)
			}
			return nil
		})
	}()
	upTo := func(want uint64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			mu.Lock()
			n := len(seqs)
			var got uint64
			if n > 0 {
				got = seqs[n-1]
			}
			mu.Unlock()
			if got == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("follower at %d (%d entries), want %d", got, n, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	upTo(last)
	last = mustAppend(t, cl, 0, last, recs(30, 3), port.CommitMarker{SourceSeq: 2})
	upTo(last)
	// Its consumer lost (deleted here; in a cluster, with its server): the
	// follower goes on from where it was on a new one.
	if n := deleteConsumers(t, js, jetstream.ChangelogStream(app, 0)); n != 1 {
		t.Fatalf("deleted %d consumers, want the follower's", n)
	}
	last = mustAppend(t, cl, 0, last, recs(33, 5), port.CommitMarker{SourceSeq: 3})
	upTo(last)
	mu.Lock()
	for i, s := range seqs {
		if s != uint64(i+1) {
			t.Fatalf("entry %d has sequence %d: out of order or missing", i, s)
		}
	}
	mu.Unlock()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Follow after cancel = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Follow did not return after its context ended")
	}
}

// deleteConsumers deletes every consumer of stream and returns how many
// there were.
func deleteConsumers(t *testing.T, js natsjs.JetStream, stream string) int {
	t.Helper()
	ctx := testCtx(t)
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	lister := st.ConsumerNames(ctx)
	for name := range lister.Name() {
		names = append(names, name)
	}
	if err := lister.Err(); err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if err := js.DeleteConsumer(ctx, stream, name); err != nil {
			t.Fatal(err)
		}
	}
	return len(names)
}

// TestReplayConsumerLost: a replay whose consumer is lost midway goes on
// from where it was on a new one, and passes every entry once, in order.
func TestReplayConsumerLost(t *testing.T) {
	_, _, js := jstest.Start(t)
	var log bytes.Buffer
	cl, err := jetstream.NewChangelog(testCtx(t), js, jetstream.ChangelogConfig{App: app, Partitions: 1,
		Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	var recs []port.Record
	for i := range 20_000 {
		recs = append(recs, port.Record{Table: "t", Key: fmt.Appendf(nil, "k%d", i), Value: make([]byte, 200)})
	}
	var last uint64
	for i := 0; i < len(recs); i += 500 {
		last = mustAppend(t, cl, 0, last, recs[i:i+500], port.CommitMarker{SourceSeq: uint64(i + 1)})
	}
	var seqs []uint64
	deleted := 0
	err = cl.Replay(testCtx(t), 0, 1, last, 100, func(es []port.Entry) error {
		for _, e := range es {
			seqs = append(seqs, e.Seq)
		}
		if deleted == 0 {
			deleted = deleteConsumers(t, js, jetstream.ChangelogStream(app, 0))
		}
		return nil
	})
	if err != nil || deleted != 1 {
		t.Fatalf("Replay = %v after deleting %d consumers, want nil after 1", err, deleted)
	}
	if !strings.Contains(log.String(), "replay: replacing its consumer") {
		t.Errorf("the replacement is not logged:\n%s", log.String())
	}
	// Every record, and the last commit marker (each one supersedes the
	// one before).
	if len(seqs) != len(recs)+1 || seqs[len(seqs)-1] != last {
		t.Fatalf("replayed %d entries (the last %d), want %d (the last %d)", len(seqs), seqs[len(seqs)-1], len(recs)+1, last)
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] <= seqs[i-1] {
			t.Fatalf("entry %d has sequence %d after %d: out of order or repeated", i, seqs[i], seqs[i-1])
		}
	}
}
