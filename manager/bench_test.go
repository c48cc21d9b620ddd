package manager_test

import (
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/edgetables/edgetables/manager"
)

// BenchmarkPipelineCount measures events/s through a count table over 8
// partitions: the events are in the source stream before the clock starts,
// which stops when every event is committed. keys=N gives every event its
// own key (no coalescing).
func BenchmarkPipelineCount(b *testing.B) {
	for _, bc := range []struct {
		keys         int
		atomic, sync bool
	}{{10000, false, false}, {0, false, false}, {10000, true, false}, {0, true, false},
		{10000, false, true}, {10000, true, true}} {
		keys := bc.keys
		name := fmt.Sprintf("keys=%d", keys)
		if keys == 0 {
			name = "keys=N"
		}
		name += map[bool]string{false: "/at-least-once", true: "/exactly-once"}[bc.atomic]
		name += map[bool]string{false: "/sync=interval", true: "/sync=always"}[bc.sync]
		b.Run(name, func(b *testing.B) {
			n := max(b.N, 1000)
			k := keys
			if k == 0 {
				k = n
			}
			h := newSyncHarness(b, manager.Config{Partitions: 8, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, bc.sync)
			h.atomic = bc.atomic
			h.newManager() // creates the streams
			want := map[string]int64{}
			h.publishCounts(n, k, want)
			b.ResetTimer()
			start := time.Now()
			h.start()
			waitFor(b, 10*time.Minute, "all committed", func() bool {
				for _, p := range h.m.Status().Partitions {
					if p.SourceSeq < uint64(n) {
						return false
					}
				}
				return true
			})
			el := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(n)/el.Seconds(), "events/s")
			st := h.m.Status()
			b.ReportMetric(float64(st.ChangelogRecords)/float64(n), "records/event")
			b.ReportMetric(float64(st.MeanCommit.Milliseconds()), "ms/commit")
			b.ReportMetric(float64(st.Commits), "commits")
			must(b, h.stop())
		})
	}
}
