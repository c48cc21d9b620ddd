package manager_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/manager"
	"github.com/edgetables/edgetables/manager/codec"
	"github.com/edgetables/edgetables/manager/port"
	"github.com/edgetables/edgetables/manager/window"
)

// fakeClock is a windowed table's clock that tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// t0 is a minute boundary: tumbling minute windows start at t0, t0+1m, ...
var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func tsEvent(ts time.Time) []byte {
	return []byte(fmt.Sprintf(`{"ts": %q}`, ts.Format(time.RFC3339Nano)))
}

// windowRig declares windowed count tables "wcount" (tumbling, one minute,
// expiring one minute after the end) and "whop" (two-minute windows every
// minute), a table "finals" that OnWindowClose of wcount adds each closed
// window's count to, and records every close.
type windowRig struct {
	clock  *fakeClock
	wcount *manager.WindowedTable[string, int64]
	whop   *manager.WindowedTable[string, int64]
	finals *manager.Table[string, int64]

	// tombstoneTTL is the tables' TombstoneTTL (0: the default).
	tombstoneTTL time.Duration
	// maxClockSkew is the tables' MaxClockSkew (0: the default).
	maxClockSkew time.Duration
	// failClose, if set, makes OnWindowClose of wcount fail for the keys
	// it returns true for.
	failClose func(key string) bool

	mu     sync.Mutex
	closes map[string]int // "key@start" → OnWindowClose calls
}

func newWindowRig(h *harness) *windowRig {
	r := &windowRig{clock: &fakeClock{t: t0}, closes: map[string]int{}}
	h.setup = func(m *manager.TableManager) {
		r.finals = manager.NewTable(manager.TableConfig[string, int64]{
			Name: "finals", Keys: codec.String{}, Values: codec.Int64{}})
		r.wcount = manager.NewWindowedTable(manager.WindowedTableConfig[string, int64]{
			Name: "wcount", Keys: codec.String{}, Values: codec.Int64{},
			Windows:      window.Tumbling(time.Minute, time.Minute),
			Time:         window.TimeSource{Kind: window.TimeField, Name: "ts"},
			Clock:        r.clock.Now,
			TombstoneTTL: r.tombstoneTTL,
			MaxClockSkew: r.maxClockSkew,
			OnWindowClose: func(e *manager.Event, k string, w window.Window, v int64) error {
				r.mu.Lock()
				if r.failClose != nil && r.failClose(k) {
					r.mu.Unlock()
					return errors.New("failing on purpose")
				}
				r.closes[k+"@"+w.Start.Format("15:04")]++
				r.mu.Unlock()
				n, err := r.finals.Get(e, k)
				if err != nil {
					return err
				}
				return r.finals.Set(e, k, n+v)
			},
		})
		r.whop = manager.NewWindowedTable(manager.WindowedTableConfig[string, int64]{
			Name: "whop", Keys: codec.String{}, Values: codec.Int64{},
			Windows:      window.Hopping(2*time.Minute, time.Minute, time.Minute),
			Time:         window.TimeSource{Kind: window.TimeField, Name: "ts"},
			Clock:        r.clock.Now,
			TombstoneTTL: r.tombstoneTTL,
			MaxClockSkew: r.maxClockSkew,
		})
		must(h.t, m.Add(r.finals))
		must(h.t, m.Add(r.wcount))
		must(h.t, m.Add(r.whop))
		inc := func(_ window.Window, n int64, _ bool) (int64, error) { return n + 1, nil }
		must(h.t, m.AddAgent(manager.Agent{
			Name: "count", Subjects: []string{"ev.*"},
			Key: func(e *manager.Event) ([]byte, error) { return []byte(e.Token(2)), nil },
			Process: func(e *manager.Event) error {
				err1 := r.wcount.Update(e, string(e.Key), inc)
				err2 := r.whop.Update(e, string(e.Key), inc)
				return errors.Join(err1, err2)
			},
		}))
	}
	return r
}

func (r *windowRig) closeCount(key string, start time.Time) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closes[key+"@"+start.Format("15:04")]
}

func (r *windowRig) totalCloses() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.closes {
		n += c
	}
	return n
}

// windows returns key's open windows in wcount as "HH:MM=count".
func windowsOf(t *testing.T, wt *manager.WindowedTable[string, int64], key string) []string {
	t.Helper()
	ws, err := wt.LookupAll(context.Background(), key)
	if err != nil {
		return []string{"error: " + err.Error()}
	}
	var out []string
	for _, w := range ws {
		out = append(out, fmt.Sprintf("%s=%d", w.Window.Start.Format("15:04"), w.Value))
	}
	return out
}

func waitWindows(t *testing.T, wt *manager.WindowedTable[string, int64], key string, want ...string) {
	t.Helper()
	var got []string
	ok := poll(20*time.Second, func() bool {
		got = windowsOf(t, wt, key)
		return fmt.Sprint(got) == fmt.Sprint(want)
	})
	if !ok {
		t.Fatalf("%s windows of %q = %v, want %v", wt.Name(), key, got, want)
	}
}

func TestWindowedCounts(t *testing.T) {
	h := newHarness(t, manager.Config{})
	r := newWindowRig(h)
	h.start()
	r.clock.Set(t0.Add(90 * time.Second))
	h.publish("ev.a", tsEvent(t0.Add(10*time.Second)))
	h.publish("ev.a", tsEvent(t0.Add(59*time.Second)))
	h.publish("ev.a", tsEvent(t0.Add(60*time.Second))) // the next window
	h.publish("ev.b", tsEvent(t0.Add(30*time.Second)))
	waitWindows(t, r.wcount, "a", "00:00=2", "00:01=1")
	waitWindows(t, r.wcount, "b", "00:00=1")
	// Hopping: [23:59, 00:01) holds 10s and 59s; [00:00, 00:02) all three;
	// [00:01, 00:03) the last.
	waitWindows(t, r.whop, "a", "23:59=2", "00:00=3", "00:01=1")

	ctx := context.Background()
	cur, found, err := r.wcount.LookupNow(ctx, "a") // now is 00:01:30
	if err != nil || !found || cur.Value != 1 || !cur.Window.Start.Equal(t0.Add(time.Minute)) || !cur.Window.End.Equal(t0.Add(2*time.Minute)) {
		t.Errorf("LookupNow = %+v, %v, %v; want 1 in [00:01, 00:02)", cur, found, err)
	}
	prev, found, err := r.wcount.LookupDelta(ctx, "a", time.Minute)
	if err != nil || !found || prev.Value != 2 || !prev.Window.Start.Equal(t0) {
		t.Errorf("LookupDelta(1m) = %+v, %v, %v; want 2 in [00:00, 00:01)", prev, found, err)
	}
	at, found, err := r.wcount.LookupAt(ctx, "b", t0.Add(5*time.Second))
	if err != nil || !found || at.Value != 1 {
		t.Errorf("LookupAt(b, 00:00:05) = %+v, %v, %v; want 1", at, found, err)
	}
	if _, found, err := r.wcount.LookupAt(ctx, "b", t0.Add(time.Minute)); err != nil || found {
		t.Errorf("LookupAt(b, 00:01) found %v, %v; want nothing", found, err)
	}
	// The windows of a key are in the key's partition: counts per table.
	if n, err := h.m.Count("wcount"); err != nil || n != 3 {
		t.Errorf("wcount holds %d windows (%v), want 3", n, err)
	}
}

// changelogState replays every partition's changelog and returns the live
// windows of table (keys whose last record is not a tombstone; the closing
// horizon, an empty key, is not a window).
func changelogState(t *testing.T, h *harness, table string) map[string]bool {
	t.Helper()
	ctx := context.Background()
	cl, err := jetstream.NewChangelog(ctx, h.js, jetstream.ChangelogConfig{App: h.app, Partitions: 4})
	must(t, err)
	live := map[string]bool{}
	for p := 0; p < 4; p++ {
		st, err := cl.State(ctx, p)
		must(t, err)
		if st.Last == 0 {
			continue
		}
		must(t, cl.Replay(ctx, p, max(st.First, 1), st.Last, 1000, func(es []port.Entry) error {
			for _, e := range es {
				if e.Commit == nil && e.Record.Table == table && len(e.Record.Key) >= 8 {
					k := fmt.Sprintf("%d/%x", p, e.Record.Key)
					live[k] = true
					if e.Record.Delete {
						delete(live, k)
					}
				}
			}
			return nil
		}))
	}
	return live
}

// TestWindowExpiry: closed windows leave the store and the changelog (a
// full rebuild from the changelog does not bring them back); a late event
// for a closed window is refused, even when the clock goes back.
func TestWindowExpiry(t *testing.T) {
	h := newHarness(t, manager.Config{})
	r := newWindowRig(h)
	h.start()
	h.publish("ev.a", tsEvent(t0.Add(10*time.Second)))
	h.publish("ev.a", tsEvent(t0.Add(70*time.Second)))
	waitWindows(t, r.wcount, "a", "00:00=1", "00:01=1")
	if n := len(changelogState(t, h, "wcount")); n < 2 {
		t.Fatalf("changelog holds %d live windows, want 2", n)
	}

	r.clock.Set(t0.Add(2 * time.Minute)) // [00:00, 00:01) closes
	waitWindows(t, r.wcount, "a", "00:01=1")
	waitFor(t, 10*time.Second, "close committed", func() bool {
		n, _, _ := r.finals.Lookup(context.Background(), "a")
		return n == 1
	})

	// A late event for the closed window is refused (dead letter) and
	// does not bring it back, even if the clock goes back: the closing
	// horizon in the changelog says it closed.
	r.clock.Set(t0.Add(90 * time.Second))
	h.publish("ev.a", tsEvent(t0.Add(20*time.Second)))
	waitFor(t, 10*time.Second, "late event refused", func() bool { return h.m.Status().DeadLetters["count"] == 1 })
	waitWindows(t, r.wcount, "a", "00:01=1")

	r.clock.Set(t0.Add(10 * time.Minute)) // everything closes
	waitWindows(t, r.wcount, "a")
	waitWindows(t, r.whop, "a")
	waitFor(t, 10*time.Second, "stores empty", func() bool {
		n1, _ := h.m.Count("wcount")
		n2, _ := h.m.Count("whop")
		return n1 == 0 && n2 == 0
	})
	must(t, h.stop())
	for _, table := range []string{"wcount", "whop"} {
		if live := changelogState(t, h, table); len(live) != 0 {
			t.Errorf("changelog of %s still holds windows: %v", table, live)
		}
	}
	if got := r.closeCount("a", t0); got != 1 {
		t.Errorf("OnWindowClose of a@00:00 called %d times, want 1", got)
	}

	// A store rebuilt from the changelog has no windows either.
	must(t, os.RemoveAll(h.dir))
	h.start()
	if n, err := h.m.Count("wcount"); err != nil || n != 0 {
		t.Errorf("rebuilt store holds %d windows (%v), want 0", n, err)
	}
	if n, _, _ := r.finals.Lookup(context.Background(), "a"); n != 2 {
		t.Errorf("finals[a] = %d after rebuild, want 2", n)
	}
}

// TestWindowCloseOnceAcrossRestart: OnWindowClose fires once per window:
// not again after a restart for windows closed before it, and for windows
// restored from the store that closed while the node was down.
func TestWindowCloseOnceAcrossRestart(t *testing.T) {
	h := newHarness(t, manager.Config{})
	r := newWindowRig(h)
	h.start()
	for i := 0; i < 3; i++ {
		h.publish("ev.a", tsEvent(t0.Add(time.Duration(i)*time.Second)))
	}
	h.publish("ev.a", tsEvent(t0.Add(61*time.Second)))
	h.publish("ev.a", tsEvent(t0.Add(62*time.Second)))
	h.publish("ev.b", tsEvent(t0.Add(63*time.Second)))
	waitWindows(t, r.wcount, "a", "00:00=3", "00:01=2")
	waitWindows(t, r.wcount, "b", "00:01=1")

	r.clock.Set(t0.Add(2 * time.Minute)) // a@00:00 closes
	ctx := context.Background()
	waitFor(t, 10*time.Second, "a@00:00 closed", func() bool {
		n, _, _ := r.finals.Lookup(ctx, "a")
		return n == 3
	})
	must(t, h.stop())

	r.clock.Set(t0.Add(3*time.Minute + 30*time.Second)) // 00:01 windows close while down
	h.start()
	waitFor(t, 10*time.Second, "restored windows closed", func() bool {
		a, _, _ := r.finals.Lookup(ctx, "a")
		b, _, _ := r.finals.Lookup(ctx, "b")
		return a == 5 && b == 1
	})
	waitWindows(t, r.wcount, "a")
	waitWindows(t, r.wcount, "b")

	// Restart once more, rebuilding the store from the changelog, then
	// close a new window: a sync point after which any repeated close of
	// the old windows would have happened.
	must(t, h.stop())
	must(t, os.RemoveAll(h.dir))
	h.start()
	h.publish("ev.c", tsEvent(t0.Add(4*time.Minute)))
	waitWindows(t, r.wcount, "c", "00:04=1")
	r.clock.Set(t0.Add(6 * time.Minute))
	waitFor(t, 10*time.Second, "c@00:04 closed", func() bool {
		n, _, _ := r.finals.Lookup(ctx, "c")
		return n == 1
	})
	for _, c := range []struct {
		key   string
		start time.Time
	}{{"a", t0}, {"a", t0.Add(time.Minute)}, {"b", t0.Add(time.Minute)}, {"c", t0.Add(4 * time.Minute)}} {
		if got := r.closeCount(c.key, c.start); got != 1 {
			t.Errorf("OnWindowClose of %s@%s called %d times, want 1", c.key, c.start.Format("15:04"), got)
		}
	}
	if got := r.totalCloses(); got != 4 {
		t.Errorf("OnWindowClose called %d times in all, want 4", got)
	}
	if a, _, _ := r.finals.Lookup(ctx, "a"); a != 5 {
		t.Errorf("finals[a] = %d, want 5", a)
	}
}
