package manager_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/manager"
	"github.com/edgetables/edgetables/manager/port"
)

// windowMessages replays every partition's changelog and returns the
// messages (values and tombstones alike) of table's windows of key, as
// "START value" or "START del".
func windowMessages(t *testing.T, h *harness, table, key string) []string {
	t.Helper()
	ctx := context.Background()
	cl, err := jetstream.NewChangelog(ctx, h.js, jetstream.ChangelogConfig{App: h.app, Partitions: 4})
	must(t, err)
	var out []string
	for p := 0; p < 4; p++ {
		st, err := cl.State(ctx, p)
		must(t, err)
		if st.Last == 0 {
			continue
		}
		must(t, cl.Replay(ctx, p, max(st.First, 1), st.Last, 1000, func(es []port.Entry) error {
			for _, e := range es {
				k := e.Record.Key
				if e.Commit != nil || e.Record.Table != table || len(k) != len(key)+8 || string(k[:len(key)]) != key {
					continue
				}
				start := time.Unix(0, int64(binary.BigEndian.Uint64(k[len(key):])^(1<<63))).UTC().Format("15:04")
				if e.Record.Delete {
					out = append(out, start+" del")
				} else {
					out = append(out, start+" value")
				}
			}
			return nil
		}))
	}
	return out
}

// copyDir copies the directory tree src to dst (which must not exist).
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	must(t, os.CopyFS(dst, os.DirFS(src)))
}

// TestClosedWindowTombstonesExpire: the tombstones of closed windows leave
// the changelog after their TTL, so that it holds nothing of them; the
// windows stay closed (a late event is refused) and rebuilt stores do not
// hold them.
func TestClosedWindowTombstonesExpire(t *testing.T) {
	h := newHarness(t, manager.Config{})
	r := newWindowRig(h)
	r.tombstoneTTL = time.Second
	h.start()
	h.publish("ev.a", tsEvent(t0.Add(10*time.Second)))
	h.publish("ev.a", tsEvent(t0.Add(70*time.Second)))
	waitWindows(t, r.wcount, "a", "00:00=1", "00:01=1")
	if got := windowMessages(t, h, "wcount", "a"); fmt.Sprint(got) != "[00:00 value 00:01 value]" {
		t.Fatalf("changelog of wcount/a = %v before closing", got)
	}

	r.clock.Set(t0.Add(10 * time.Minute)) // everything closes
	waitWindows(t, r.wcount, "a")
	waitWindows(t, r.whop, "a")
	waitFor(t, 10*time.Second, "closes committed", func() bool {
		n, _, _ := r.finals.Lookup(context.Background(), "a")
		return n == 2
	})
	waitFor(t, 15*time.Second, "tombstones expired", func() bool {
		return len(windowMessages(t, h, "wcount", "a")) == 0 && len(windowMessages(t, h, "whop", "a")) == 0
	})

	// Still closed: a late event is refused even with the clock back.
	r.clock.Set(t0.Add(30 * time.Second))
	h.publish("ev.a", tsEvent(t0.Add(20*time.Second)))
	waitFor(t, 10*time.Second, "late event refused", func() bool { return h.m.Status().DeadLetters["count"] == 1 })
	waitWindows(t, r.wcount, "a")

	// A store rebuilt from the changelog holds no window.
	must(t, h.stop())
	must(t, os.RemoveAll(h.dir))
	h.start()
	if n, err := h.m.Count("wcount"); err != nil || n != 0 {
		t.Errorf("rebuilt store holds %d windows (%v), want 0", n, err)
	}
	waitWindows(t, r.wcount, "a")
	if got := r.totalCloses(); got != 2 {
		t.Errorf("OnWindowClose called %d times, want 2", got)
	}
}

// TestExpiredTombstoneStaleStore: a store that recovers from an offset
// before a window's tombstone, after the tombstone expired, still holds the
// window (a remnant). Readers do not see it, even with the clock back
// before its closing time (the closing horizon closes it); the owner
// removes it without calling OnWindowClose again; its value is not counted
// twice.
func TestExpiredTombstoneStaleStore(t *testing.T) {
	for _, atomic := range []bool{false, true} {
		t.Run(fmt.Sprintf("atomic=%v", atomic), func(t *testing.T) {
			h := newHarness(t, manager.Config{})
			h.atomic = atomic
			r := newWindowRig(h)
			r.tombstoneTTL = time.Second
			h.start()
			ctx := context.Background()
			h.publish("ev.a", tsEvent(t0.Add(10*time.Second)))
			h.publish("ev.a", tsEvent(t0.Add(20*time.Second)))
			// A window that stays open: its record, at the start of the
			// partition's log, keeps the log's first sequence below the
			// stale store's offset, so that the store is replayed, not
			// rebuilt.
			h.publish("ev.a", tsEvent(t0.Add(time.Hour)))
			waitWindows(t, r.wcount, "a", "00:00=2", "01:00=1")
			must(t, h.stop())
			stale := filepath.Join(t.TempDir(), "stale")
			copyDir(t, h.dir, stale)

			h.start()
			r.clock.Set(t0.Add(2 * time.Minute)) // a@00:00 closes
			waitFor(t, 10*time.Second, "a@00:00 closed", func() bool {
				n, _, _ := r.finals.Lookup(ctx, "a")
				return n == 2
			})
			waitFor(t, 15*time.Second, "the tombstone expired", func() bool {
				return fmt.Sprint(windowMessages(t, h, "wcount", "a")) == "[01:00 value]"
			})
			must(t, h.stop())

			// The node comes back with the stale store, its clock behind
			// the window's closing time.
			must(t, os.RemoveAll(h.dir))
			copyDir(t, stale, h.dir)
			r.clock.Set(t0.Add(30 * time.Second))
			h.start()
			for _, rp := range h.m.RecoveryProgress() {
				if rp.Rebuilt {
					t.Fatalf("partition %d rebuilt (%s): the stale store was not replayed", rp.Partition, rp.Reason)
				}
			}
			if _, found, err := r.wcount.LookupAt(ctx, "a", t0.Add(10*time.Second)); err != nil || found {
				t.Errorf("LookupAt(a, 00:00:10) found %v (%v): the closed window is back", found, err)
			}
			waitWindows(t, r.wcount, "a", "01:00=1")
			waitFor(t, 10*time.Second, "remnant removed from the store", func() bool {
				n, _ := h.m.Count("wcount")
				return n == 1
			})
			if got := r.closeCount("a", t0); got != 1 {
				t.Errorf("OnWindowClose of a@00:00 called %d times, want 1", got)
			}
			if n, _, _ := r.finals.Lookup(ctx, "a"); n != 2 {
				t.Errorf("finals[a] = %d, want 2", n)
			}
			// The remnant's removal is committed: a restart does not
			// find it again.
			must(t, h.stop())
			h.start()
			if n, err := h.m.Count("wcount"); err != nil || n != 1 {
				t.Errorf("after a restart wcount holds %d windows (%v), want 1", n, err)
			}
			if got := r.totalCloses(); got != 1 {
				t.Errorf("OnWindowClose called %d times in all, want 1", got)
			}
		})
	}
}

// TestFailingCloseKeepsLaterTombstones: while OnWindowClose of a window
// fails, the windows closing after it get permanent tombstones (no record
// vouches for them yet: a store that missed one would close it again),
// while those before it get the TTL; once it closes, the next ones get the
// TTL again.
func TestFailingCloseKeepsLaterTombstones(t *testing.T) {
	h := newHarness(t, manager.Config{Partitions: 1})
	r := newWindowRig(h)
	r.tombstoneTTL = time.Second
	var failing sync.Map
	failing.Store("b", true)
	r.failClose = func(k string) bool { _, ok := failing.Load(k); return ok }
	h.start()
	ctx := context.Background()
	for _, k := range []string{"a", "b", "c"} { // closing order: a, b, c
		h.publish("ev."+k, tsEvent(t0.Add(10*time.Second)))
	}
	waitWindows(t, r.wcount, "c", "00:00=1")
	r.clock.Set(t0.Add(2 * time.Minute))
	waitFor(t, 10*time.Second, "a and c closed", func() bool {
		a, _, _ := r.finals.Lookup(ctx, "a")
		c, _, _ := r.finals.Lookup(ctx, "c")
		return a == 1 && c == 1
	})
	waitFor(t, 15*time.Second, "a's tombstone expired", func() bool { return len(windowMessages(t, h, "wcount", "a")) == 0 })
	if got := windowMessages(t, h, "wcount", "c"); fmt.Sprint(got) != "[00:00 del]" {
		t.Errorf("changelog of wcount/c = %v, want its permanent tombstone", got)
	}
	if got := windowMessages(t, h, "wcount", "b"); fmt.Sprint(got) != "[00:00 value]" {
		t.Errorf("changelog of wcount/b = %v, want its value (not closed yet)", got)
	}

	failing.Delete("b")
	r.clock.Set(t0.Add(2*time.Minute + 2*time.Second)) // past the retry
	waitFor(t, 10*time.Second, "b closed", func() bool {
		n, _, _ := r.finals.Lookup(ctx, "b")
		return n == 1
	})
	waitFor(t, 15*time.Second, "b's tombstone expired", func() bool { return len(windowMessages(t, h, "wcount", "b")) == 0 })
	h.publish("ev.d", tsEvent(t0.Add(2*time.Minute)))
	waitWindows(t, r.wcount, "d", "00:02=1")
	r.clock.Set(t0.Add(4 * time.Minute))
	waitFor(t, 15*time.Second, "d closed and its tombstone expired", func() bool {
		n, _, _ := r.finals.Lookup(ctx, "d")
		return n == 1 && len(windowMessages(t, h, "wcount", "d")) == 0
	})
	for k, start := range map[string]time.Time{"a": t0, "b": t0, "c": t0, "d": t0.Add(2 * time.Minute)} {
		if got := r.closeCount(k, start); got != 1 {
			t.Errorf("OnWindowClose of %s called %d times, want 1", k, got)
		}
	}
}
