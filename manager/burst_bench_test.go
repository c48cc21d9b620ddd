package manager_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/manager"
)

// BenchmarkGarbageBurst measures what bad input costs: 20,000 good events
// with a burst of 100,000 garbage events (not JSON: the agent refuses each,
// a dead letter) against 120,000 good events, the same volume, over 1,000
// keys in 4 partitions. The slowdown metric is the burst's time over the
// all-good run's, measured in the same run: refused events must cost no
// more than twice what processed ones do (slowdown at most 2).
func BenchmarkGarbageBurst(b *testing.B) {
	const good, garbage = 20000, 100000
	var baseline time.Duration
	for _, c := range []struct {
		name          string
		good, garbage int
	}{{"all-good", good + garbage, 0}, {"burst", good, garbage}} {
		b.Run(c.name, func(b *testing.B) {
			var el time.Duration
			for range b.N {
				el = runBurst(b, c.good, c.garbage)
			}
			if c.garbage == 0 {
				baseline = el
			} else if baseline > 0 {
				b.ReportMetric(float64(el)/float64(baseline), "slowdown")
			}
			b.ReportMetric(float64(c.good+c.garbage)/el.Seconds(), "events/s")
		})
	}
}

// jsonCountSetup is countSetup whose agent refuses events whose data is
// not JSON.
func jsonCountSetup(h *harness) func(m *manager.TableManager) {
	return checkedCountSetup(h, func(data []byte) error {
		if !json.Valid(data) {
			return errors.New("not JSON")
		}
		return nil
	})
}

// runBurst stores good and garbage events interleaved, then times the
// manager processing and committing all of them.
func runBurst(b *testing.B, good, garbage int) time.Duration {
	h := newHarness(b, manager.Config{Partitions: 4, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	h.setup = jsonCountSetup(h)
	h.newManager() // creates the streams
	want := map[string]int64{}
	var futs []natsjs.PubAckFuture
	publish := func(subject, data string) {
		f, err := h.js.PublishAsync(subject, []byte(data), natsjs.WithStallWait(time.Minute))
		must(b, err)
		futs = append(futs, f)
	}
	per := 0
	if good > 0 {
		per = garbage / good
	}
	for i := 0; i < good; i++ {
		for range per {
			publish(fmt.Sprintf("ev.k%d", i%1000), "not json {")
		}
		k := fmt.Sprintf("k%d", i%1000)
		publish("ev."+k, `{"v":1}`)
		want[k]++
	}
	for _, f := range futs {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			b.Fatal(err)
		case <-context.Background().Done():
		}
	}
	last := uint64(len(futs))
	b.ResetTimer()
	start := time.Now()
	h.start()
	waitFor(b, 10*time.Minute, "all committed", func() bool {
		for _, p := range h.m.Status().Partitions {
			if p.SourceSeq < last {
				return false
			}
		}
		return true
	})
	el := time.Since(start)
	b.StopTimer()
	h.waitCounts(want)
	if got := h.m.Status().DeadLetters["count"]; got != uint64(garbage) {
		b.Fatalf("%d dead letters, want %d", got, garbage)
	}
	must(b, h.stop())
	return el
}
