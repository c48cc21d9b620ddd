package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgetables/edgetables/store"
)

// withDeadline fails t when fn has not returned within d: a read
// transaction kept open across a write that grows the file deadlocks.
func withDeadline(t *testing.T, d time.Duration, what string, fn func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(d):
		t.Fatalf("%s: still running after %v (deadlock?)", what, d)
	}
}

// TestGetBetweenWrites checks that a Get sees the last Apply before it, a
// table created since the previous Get, a key deleted since, and that an
// Apply growing the file past its memory map does not wait for the
// previous Get's read transaction.
func TestGetBetweenWrites(t *testing.T) {
	s := openBolt(t, filepath.Join(t.TempDir(), "p.db"))
	wantGet(t, s, "t", []byte("k"), nil) // opens the snapshot: no table yet
	steps := []struct {
		name  string
		batch store.Batch
		table string
		key   string
		want  []byte // nil: absent
	}{
		{"first put", store.Batch{Mutations: []store.Mutation{put("t", "k", "v1")}}, "t", "k", []byte("v1")},
		{"overwrite", store.Batch{Mutations: []store.Mutation{put("t", "k", "v2")}}, "t", "k", []byte("v2")},
		{"new table", store.Batch{Mutations: []store.Mutation{put("u", "k", "u1")}}, "u", "k", []byte("u1")},
		{"delete", store.Batch{Mutations: []store.Mutation{{Table: "t", Key: []byte("k"), Delete: true}}}, "t", "k", nil},
		{"empty value", store.Batch{Mutations: []store.Mutation{{Table: "t", Key: []byte("e"), Value: []byte{}}}}, "t", "e", []byte{}},
		{"long key", store.Batch{Mutations: []store.Mutation{put("t", strings.Repeat("x", 200), "long")}}, "t", strings.Repeat("x", 200), []byte("long")},
		{"grows the map", store.Batch{Mutations: bigBatch("t", 4000, 8<<10)}, "t", "big-0003999", bytes.Repeat([]byte("v"), 8<<10)},
		{"grows it again", store.Batch{Mutations: bigBatch("u", 4000, 8<<10)}, "u", "big-0000000", bytes.Repeat([]byte("v"), 8<<10)},
	}
	for _, st := range steps {
		withDeadline(t, 30*time.Second, st.name, func() error { return s.Apply(st.batch) })
		wantGet(t, s, st.table, []byte(st.key), st.want)
		wantGet(t, s, st.table, []byte(st.key), st.want) // from the same snapshot
	}
	withDeadline(t, 10*time.Second, "Close after a Get", s.Close)
	if _, _, err := s.Get("t", []byte("k")); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Get after Close: %v, want ErrClosed", err)
	}
}

// bigBatch returns n puts of size-byte values to table, keys big-%07d.
func bigBatch(table string, n, size int) []store.Mutation {
	ms := make([]store.Mutation, n)
	for i := range ms {
		ms[i] = store.Mutation{Table: table, Key: fmt.Appendf(nil, "big-%07d", i), Value: bytes.Repeat([]byte("v"), size)}
	}
	return ms
}

// TestGetWhileApplying runs Gets in several goroutines while Applies grow
// the file: every Get returns a value that some Apply wrote, never an older
// one than the last Apply that returned before the Get began. Run it with
// -race.
func TestGetWhileApplying(t *testing.T) {
	s := openBolt(t, filepath.Join(t.TempDir(), "p.db"))
	const keys = 64
	var (
		mu      sync.Mutex
		applied int // the last round every key holds
	)
	round := func(r int) store.Batch {
		ms := make([]store.Mutation, 0, keys+200)
		for k := range keys {
			ms = append(ms, store.Mutation{Table: "t", Key: fmt.Appendf(nil, "k%02d", k), Value: fmt.Appendf(nil, "%08d", r)})
		}
		// Filler: the file grows past its memory map during the rounds.
		for i := range 200 {
			ms = append(ms, store.Mutation{Table: "fill", Key: fmt.Appendf(nil, "%06d-%03d", r, i), Value: bytes.Repeat([]byte("f"), 1<<10)})
		}
		return store.Batch{Mutations: ms}
	}
	if err := s.Apply(round(0)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	readers, stop := 3, make(chan struct{})
	for g := range readers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				floor := applied
				mu.Unlock()
				key := fmt.Appendf(nil, "k%02d", (g*7+i)%keys)
				v, found, err := s.Get("t", key)
				var r int
				if err == nil && found {
					_, err = fmt.Sscanf(string(v), "%08d", &r)
				}
				switch {
				case err != nil:
					errs <- fmt.Errorf("Get %s: %w", key, err)
					return
				case !found || r < floor:
					errs <- fmt.Errorf("Get %s = round %d (found %v), want at least round %d", key, r, found, floor)
					return
				}
			}
		})
	}
	for r := 1; r <= 60 && ctx.Err() == nil; r++ {
		if err := s.Apply(round(r)); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		applied = r
		mu.Unlock()
	}
	close(stop)
	withDeadline(t, 30*time.Second, "readers", func() error { wg.Wait(); return nil })
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	if ctx.Err() != nil {
		t.Fatal("the rounds did not finish within 60s")
	}
}
