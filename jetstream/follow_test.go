package jetstream_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

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
