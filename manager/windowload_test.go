package manager_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/edgetables/edgetables/manager"
)

// TestWindowsCloseUnderLoad: windows close while events keep arriving
// fast enough that every commit is triggered by CommitEvery, never by the
// commit interval.
func TestWindowsCloseUnderLoad(t *testing.T) {
	h := newHarness(t, manager.Config{CommitEvery: 10, CommitInterval: time.Second})
	r := newWindowRig(h)
	h.start()
	h.publish("ev.a", tsEvent(t0.Add(10*time.Second)))
	waitWindows(t, r.wcount, "a", "00:00=1")

	// Load: bursts of events of key b in a window that stays open.
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ev := tsEvent(t0.Add(30 * time.Minute))
		for ctx.Err() == nil {
			for range 50 {
				if _, err := h.js.PublishAsync("ev.b", ev); err != nil {
					return
				}
			}
			select {
			case <-h.js.PublishAsyncComplete():
			case <-ctx.Done():
			case <-time.After(5 * time.Second):
			}
		}
	}()
	defer func() { stop(); wg.Wait() }()
	waitFor(t, 10*time.Second, "load flowing", func() bool {
		ws, err := r.wcount.LookupAll(context.Background(), "b")
		return err == nil && len(ws) == 1 && ws[0].Value >= 100
	})

	r.clock.Set(t0.Add(3 * time.Minute))
	waitFor(t, 10*time.Second, "a@00:00 closed under load", func() bool { return r.closeCount("a", t0) == 1 })
	before := windowCount(t, r.wcount, "b")
	waitFor(t, 10*time.Second, "load still flowing", func() bool { return windowCount(t, r.wcount, "b") > before })
}

// windowCount returns the value of key's only window in wt.
func windowCount(t *testing.T, wt *manager.WindowedTable[string, int64], key string) int64 {
	t.Helper()
	ws, err := wt.LookupAll(context.Background(), key)
	if err != nil || len(ws) != 1 {
		return -1
	}
	return ws[0].Value
}
