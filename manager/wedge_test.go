package manager_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/edgetables/edgetables/manager"
	"github.com/edgetables/edgetables/manager/codec"
	"github.com/edgetables/edgetables/manager/port"
)

// fanSetup adds to the count setup a table "fan" written by agent "fan" on
// "bad.fan.<key>": an event whose data is a number n writes n keys of its
// partition; any other data is stored as the value of the event's key.
func fanSetup(h *harness) func(m *manager.TableManager) {
	count := countSetup(h)
	return func(m *manager.TableManager) {
		count(m)
		fan := manager.NewTable(manager.TableConfig[string, string]{Name: "fan", Keys: codec.String{}, Values: codec.String{}})
		must(h.t, m.Add(fan))
		must(h.t, m.AddAgent(manager.Agent{
			Name: "fan", Subjects: []string{"bad.fan.*"},
			Key: func(e *manager.Event) ([]byte, error) { return []byte(e.Token(3)), nil },
			Process: func(e *manager.Event) error {
				n, err := strconv.Atoi(string(e.Data))
				if err != nil {
					return fan.Set(e, string(e.Key), string(e.Data))
				}
				for i, j := 0, 0; i < n; j++ {
					k := fmt.Sprintf("%s/%d", e.Key, j)
					if manager.PartitionOf([]byte(k), m.Partitions()) != e.Partition {
						continue
					}
					if err := fan.Set(e, k, "x"); err != nil {
						return err
					}
					i++
				}
				return nil
			},
		}))
	}
}

// TestOneEventNeverWedgesAPartition runs with the binary's exactly-once
// limits. An event writing more keys than one commit can hold, and one
// writing a value larger than a changelog record can carry, go to the
// dead-letter subject with the reason, their writes dropped; an event that
// fits only an empty buffer commits the buffer first. Every partition goes
// on processing.
func TestOneEventNeverWedgesAPartition(t *testing.T) {
	h := newHarness(t, manager.Config{Partitions: 2, CommitInterval: 50 * time.Millisecond})
	h.atomic = true
	h.setup = fanSetup(h)
	h.start()
	want := map[string]int64{}
	h.publishCounts(100, 10, want)
	h.waitCounts(want)

	h.publish("bad.fan.big", []byte("1200"))                          // more keys than a commit holds
	h.publish("bad.fan.huge", []byte(strings.Repeat("v", 1<<20-200))) // fits a publish, not a record
	h.publish("bad.fan.wide", []byte("850"))                          // below the commit trigger
	h.publish("bad.fan.wider", []byte("600"))                         // fits only after a commit
	h.publishCounts(300, 10, want)
	h.waitCounts(want)

	dl := h.m.Status().DeadLetters["fan"]
	if dl != 2 {
		t.Errorf("fan dead letters = %d; want 2 (the 1,200-key event and the 1 MiB value)", dl)
	}
	ctx := context.Background()
	c, err := h.m.Table("fan")
	must(t, err)
	fan := c.(*manager.Table[string, string])
	for _, c := range []struct {
		key   string
		found bool
	}{{"big/0", false}, {"big/1", false}, {"huge", false}} {
		if _, ok, err := fan.Lookup(ctx, c.key); err != nil || ok != c.found {
			t.Errorf("fan[%s]: found %v, err %v; want found %v", c.key, ok, err, c.found)
		}
	}
	wide := func() int {
		n := 0
		for _, k := range []string{"wide", "wider"} {
			for j := 0; j < 3000; j++ {
				if _, ok, _ := fan.Lookup(ctx, fmt.Sprintf("%s/%d", k, j)); ok {
					n++
				}
			}
		}
		return n
	}
	if !poll(10*time.Second, func() bool { return wide() == 850+600 }) {
		t.Errorf("fan keys of the wide events = %d; want 1450", wide())
	}
}

// TestFailedFinalCommitIsReturned: while a partition's commits fail, the
// node says it is not ready and why; a final commit at shutdown that fails
// makes Run return an error wrapping ErrFinalCommit (the process exits
// non-zero), and the events it held are counted after the next start.
func TestFailedFinalCommitIsReturned(t *testing.T) {
	lc := &lossyChangelog{partition: 0}
	h := newHarness(t, manager.Config{Partitions: 2, CommitInterval: 100 * time.Millisecond})
	h.wrapChangelog = func(c port.Changelog) port.Changelog { lc.Changelog = c; return lc }
	h.start()
	want := map[string]int64{}
	h.publishCounts(100, 10, want)
	h.waitCounts(want)
	lc.armed.Store(true)
	h.publishCounts(10, 10, want)
	waitFor(t, 20*time.Second, "not ready while partition 0's commits fail", func() bool {
		ready, reasons := h.m.Readiness()
		return !ready && len(reasons) == 1 && strings.Contains(reasons[0], "partition 0: commits failing")
	})
	if err := h.stop(); !errors.Is(err, manager.ErrFinalCommit) {
		t.Fatalf("Run returned %v; want an error wrapping ErrFinalCommit", err)
	}
	lc.armed.Store(false)
	h.start()
	h.waitCounts(want)
}

// TestFailingPartitionDoesNotStopOthers: partition 0's changelog refuses
// every append; its buffer fills up. The other partition goes on counting
// meanwhile (processing used to wait for partition 0 for good), partition
// 0 holds no more than a full buffer, and once its appends go through
// again every event counts exactly once.
func TestFailingPartitionDoesNotStopOthers(t *testing.T) {
	lc := &lossyChangelog{partition: 0}
	h := newHarness(t, manager.Config{Partitions: 2, CommitInterval: 20 * time.Millisecond, CommitEvery: 20})
	h.wrapChangelog = func(c port.Changelog) port.Changelog { lc.Changelog = c; return lc }
	h.start()
	want := map[string]int64{}
	h.publishCounts(200, 100, want)
	h.waitCounts(want)

	lc.armed.Store(true)
	h.publishCounts(2000, 100, want)
	others := inPartition(want, 1, 2)
	h.waitCounts(others) // partition 1, while partition 0 cannot commit
	for _, ps := range h.m.Status().Partitions {
		if ps.Partition == 0 && ps.Buffered > 2*20 {
			t.Errorf("partition 0 holds %d uncommitted keys; want at most two buffers of 20", ps.Buffered)
		}
	}
	lc.armed.Store(false)
	h.waitCounts(want)
	h.publishCounts(200, 100, want)
	h.waitCounts(want)
}

// twoLossyChangelogs refuses the appends of the partitions armed.
type twoLossyChangelogs struct {
	port.Changelog
	armed [2]atomic.Bool
}

func (c *twoLossyChangelogs) Append(ctx context.Context, p int, expectLast uint64, recs []port.Record, marker port.CommitMarker) (uint64, error) {
	if p < 2 && c.armed[p].Load() {
		return 0, fmt.Errorf("injected: %w", nats.ErrTimeout)
	}
	return c.Changelog.Append(ctx, p, expectLast, recs, marker)
}

// TestUnparkingOneLeavesTheOtherParked: both partitions are parked; one
// is unparked and the source is read again. The other, still parked, must
// not follow the new reader: attached to it, its position moved past the
// events it did not take, and once its commits went through they were
// committed as processed (seen under load: 50 keys short).
func TestUnparkingOneLeavesTheOtherParked(t *testing.T) {
	lc := &twoLossyChangelogs{}
	h := newHarness(t, manager.Config{Partitions: 2, CommitInterval: 20 * time.Millisecond, CommitEvery: 20})
	h.wrapChangelog = func(c port.Changelog) port.Changelog { lc.Changelog = c; return lc }
	h.start()
	want := map[string]int64{}
	h.publishCounts(200, 100, want)
	h.waitCounts(want)

	lc.armed[0].Store(true)
	lc.armed[1].Store(true)
	h.publishCounts(1000, 100, want)
	waitFor(t, 20*time.Second, "both partitions parked", func() bool {
		return strings.Count(strings.Join(notReady(h.m), "\n"), "commits failing") == 2
	})
	lc.armed[1].Store(false) // partition 1 is unparked, the source read again
	others := inPartition(want, 1, 2)
	h.waitCounts(others)
	h.publishCounts(1000, 100, want)
	others = inPartition(want, 1, 2)
	h.waitCounts(others) // partition 0 still parked meanwhile
	lc.armed[0].Store(false)
	h.waitCounts(want)
	must(t, h.stop())
	h.start()
	h.waitCounts(want)
}

func notReady(m *manager.TableManager) []string {
	_, reasons := m.Readiness()
	return reasons
}

// inPartition returns the counts of want whose keys are in partition p of n.
func inPartition(want map[string]int64, p, n int) map[string]int64 {
	out := map[string]int64{}
	for k, c := range want {
		if manager.PartitionOf([]byte(k), n) == p {
			out[k] = c
		}
	}
	return out
}
