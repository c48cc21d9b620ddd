package manager

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/edgetables/edgetables/manager/codec"
	"github.com/edgetables/edgetables/manager/status"
	"github.com/edgetables/edgetables/manager/window"
	"github.com/edgetables/edgetables/store"
)

// closeBench is one active partition of a windowed count table (one-minute
// tumbling windows, expiring one minute after their end) on a real bbolt
// file, with a clock the benchmark sets.
type closeBench struct {
	t   *WindowedTable[string, int64]
	p   *partition
	st  store.Store
	mu  sync.Mutex
	now time.Time
}

func (c *closeBench) clock() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *closeBench) set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// newCloseBench returns a partition whose store holds open windows of
// open keys (closing ten years after t0) and, for every minute i below due
// minutes, perMinute windows starting at t0+i minutes.
func newCloseBench(b *testing.B, open, dueMinutes, perMinute int) *closeBench {
	b.Helper()
	st, err := store.OpenBolt(filepath.Join(b.TempDir(), "p0.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := &closeBench{st: st, now: t0}
	m := &TableManager{log: slog.New(slog.NewTextHandler(io.Discard, nil)), tables: map[string]Collection{}}
	c.t = NewWindowedTable(WindowedTableConfig[string, int64]{Name: "w", Keys: codec.String{}, Values: codec.Int64{},
		Windows: window.Tumbling(time.Minute, time.Minute), Clock: c.clock, TombstoneTTL: -1})
	if err := c.t.bind(m); err != nil {
		b.Fatal(err)
	}
	m.tables["w"] = c.t
	one, _ := codec.Int64{}.Encode(1)
	var muts []store.Mutation
	flush := func() {
		if err := st.Apply(store.Batch{Mutations: muts}); err != nil {
			b.Fatal(err)
		}
		muts = muts[:0]
	}
	for i := range open {
		muts = append(muts, store.Mutation{Table: "w", Key: windowKey([]byte(fmt.Sprintf("k%07d", i)), t0.AddDate(10, 0, 0)), Value: one})
		if len(muts) == 10000 {
			flush()
		}
	}
	for i := range dueMinutes {
		for j := range perMinute {
			muts = append(muts, store.Mutation{Table: "w", Key: windowKey([]byte(fmt.Sprintf("d%07d", j)), t0.Add(time.Duration(i)*time.Minute)), Value: one})
			if len(muts) == 10000 {
				flush()
			}
		}
	}
	flush()
	c.p = &partition{m: m, id: 0, partitions: 1, store: st}
	c.p.setState(status.StateActive)
	c.p.activations.Add(1)
	return c
}

// commit applies p's buffer to the store, as a commit would.
func (c *closeBench) commit(b *testing.B) {
	var muts []store.Mutation
	for table, keys := range c.p.buf {
		for k, w := range keys {
			muts = append(muts, store.Mutation{Table: table, Key: []byte(k), Value: w.value, Delete: w.delete})
		}
	}
	if err := c.st.Apply(store.Batch{Mutations: muts}); err != nil {
		b.Fatal(err)
	}
	c.p.buf, c.p.keys = nil, 0
}

// BenchmarkCloseWindows measures a closing pass of one partition holding
// open=N windows: idle, nothing due (the pass that runs at every commit
// interval); due=10, ten windows due at each pass (each pass is one minute
// later), closed and committed (the commit is not timed).
func BenchmarkCloseWindows(b *testing.B) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ctx := context.Background()
	for _, open := range []int{1000, 100000} {
		b.Run(fmt.Sprintf("idle/open=%d", open), func(b *testing.B) {
			c := newCloseBench(b, open, 0, 0)
			c.set(t0.Add(time.Hour))
			c.t.closeWindows(ctx, c.p) // the first pass after an activation reads the store
			b.ResetTimer()
			for range b.N {
				c.t.closeWindows(ctx, c.p)
			}
		})
		b.Run(fmt.Sprintf("due=10/open=%d", open), func(b *testing.B) {
			c := newCloseBench(b, open, b.N+1, 10)
			c.set(t0.Add(2 * time.Minute)) // the windows of minute 0 close
			c.t.closeWindows(ctx, c.p)
			c.commit(b)
			b.ResetTimer()
			for i := range b.N {
				c.set(t0.Add(time.Duration(i+3) * time.Minute))
				c.t.closeWindows(ctx, c.p)
				b.StopTimer()
				if got := c.p.keys; got != 11 { // ten tombstones and the closing state
					b.Fatalf("pass %d buffered %d keys, want 11", i, got)
				}
				c.commit(b)
				b.StartTimer()
			}
		})
	}
}
