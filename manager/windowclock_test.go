package manager_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/manager"
)

// deadLetterReasons returns the reasons of the first n dead letters.
func deadLetterReasons(t *testing.T, h *harness, n int) []string {
	t.Helper()
	cons, err := h.js.OrderedConsumer(context.Background(), jetstream.DeadLetterStream(h.app), natsjs.OrderedConsumerConfig{})
	must(t, err)
	batch, err := cons.Fetch(n, natsjs.FetchMaxWait(5*time.Second))
	must(t, err)
	var out []string
	for msg := range batch.Messages() {
		out = append(out, msg.Headers().Get("Edgetables-Reason"))
	}
	if len(out) != n {
		t.Fatalf("read %d dead letters, want %d: %q", len(out), n, out)
	}
	return out
}

// TestClockJumpAheadDoesNotCloseWindows: the node's clock jumps a year
// ahead and comes back. Windows do not close during the jump, no horizon
// a year ahead is persisted, and after the clock comes back the current
// window accepts events and counts them with those from before the jump.
func TestClockJumpAheadDoesNotCloseWindows(t *testing.T) {
	h := newHarness(t, manager.Config{})
	r := newWindowRig(h)
	h.start()
	h.publish("ev.a", tsEvent(t0.Add(10*time.Second)))
	waitWindows(t, r.wcount, "a", "00:00=1")

	r.clock.Set(t0.AddDate(1, 0, 0))
	// Counted: its window is open by the closing clock. The commit that
	// stores it follows a closing pass that read the jumped clock.
	h.publish("ev.a", tsEvent(t0.Add(20*time.Second)))
	waitWindows(t, r.wcount, "a", "00:00=2")
	if n := r.totalCloses(); n != 0 {
		t.Fatalf("%d windows closed while the clock was a year ahead", n)
	}

	r.clock.Set(t0.Add(30 * time.Second))
	h.publish("ev.a", tsEvent(t0.Add(40*time.Second)))
	waitWindows(t, r.wcount, "a", "00:00=3")
	waitWindows(t, r.whop, "a", "23:59=3", "00:00=3")

	// The window closes when its time comes, once, with every event.
	r.clock.Set(t0.Add(2 * time.Minute))
	waitFor(t, 10*time.Second, "a@00:00 closed", func() bool {
		n, _, _ := r.finals.Lookup(context.Background(), "a")
		return n == 3
	})
	if got := r.closeCount("a", t0); got != 1 {
		t.Errorf("OnWindowClose of a@00:00 called %d times, want 1", got)
	}
	if n := h.m.Status().DeadLetters["count"]; n != 0 {
		t.Errorf("%d events refused, want none", n)
	}
	// A restart reads the horizon persisted: not a year ahead.
	must(t, h.stop())
	r.clock.Set(t0.Add(90 * time.Second))
	h.start()
	h.publish("ev.a", tsEvent(t0.Add(80*time.Second)))
	waitWindows(t, r.wcount, "a", "00:01=1")
}

// TestClockJumpFollowedWhenKept: a jump the clock keeps for the max clock
// skew was a correction: windows close by it.
func TestClockJumpFollowedWhenKept(t *testing.T) {
	h := newHarness(t, manager.Config{})
	r := newWindowRig(h)
	r.maxClockSkew = time.Second
	r.clock.Set(t0.Add(30 * time.Second))
	h.start()
	h.publish("ev.a", tsEvent(t0.Add(10*time.Second)))
	waitWindows(t, r.wcount, "a", "00:00=1")
	r.clock.Set(t0.Add(time.Hour))
	waitFor(t, 10*time.Second, "a@00:00 closed", func() bool { return r.closeCount("a", t0) == 1 })
	waitWindows(t, r.wcount, "a")
}

// TestRefusedEventTimes: event times too far ahead of the node's clock,
// or outside what windows can hold, go to the dead-letter subject with a
// reason that says so, and create no window.
func TestRefusedEventTimes(t *testing.T) {
	h := newHarness(t, manager.Config{})
	r := newWindowRig(h)
	h.start()
	cases := []struct {
		payload string
		reason  string
	}{
		{fmt.Sprintf(`{"ts": %q}`, "2030-01-01T00:00:00Z"),
			"2030-01-01T00:00:00Z is 4y ahead of this node's clock 2026-01-01T00:00:00Z (more than the max clock skew 1h)"},
		{fmt.Sprintf(`{"ts": %q}`, t0.Add(61*time.Minute).Format(time.RFC3339)), "is 1h1m ahead of this node's clock"},
		{`{"ts": "9999-01-01T00:00:00Z"}`, "9999-01-01T00:00:00Z is outside the range windowed tables accept"},
		{`{"ts": "2262-04-12T00:00:00Z"}`, "2262-04-12T00:00:00Z is outside the range windowed tables accept"},
		{`{"ts": 100000000000000}`, `time ts "100000000000000": Unix seconds outside the range`},
		{`{"ts": -5}`, `time ts "-5": Unix seconds outside the range`},
		{`{"ts": 1e400}`, `time ts "1e400" is not a finite number of seconds`},
		{`{"ts": "NaN"}`, `time ts "NaN" is not a finite number of seconds`},
	}
	for _, c := range cases {
		h.publish("ev.a", []byte(c.payload))
	}
	waitFor(t, 10*time.Second, "every event refused", func() bool { return h.m.Status().DeadLetters["count"] == uint64(len(cases)) })
	// Dead letters are sent concurrently: in any order.
	reasons := strings.Join(deadLetterReasons(t, h, len(cases)), "\n")
	for _, c := range cases {
		if !strings.Contains(reasons, c.reason) {
			t.Errorf("%s: no reason says %q; reasons:\n%s", c.payload, c.reason, reasons)
		}
	}
	// Nothing was written: an event within the skew is the first.
	h.publish("ev.a", tsEvent(t0.Add(59*time.Minute)))
	waitWindows(t, r.wcount, "a", "00:59=1")
	if n, err := h.m.Count("wcount"); err != nil || n != 1 {
		t.Errorf("wcount holds %d windows (%v), want 1", n, err)
	}
}
