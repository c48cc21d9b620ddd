package manager

import (
	"sort"
	"sync/atomic"
	"time"

	"github.com/edgetables/edgetables/manager/status"
)

// commitBounds are the upper bounds, in seconds, of the commit latency
// histogram's buckets. A commit waits for the changelog's acks (about
// 0.1–0.2 s under load on a small device) and is bounded by commitTimeout.
var commitBounds = [...]float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// latencyHistogram counts durations in commitBounds' buckets. observe costs
// a binary search and two atomic adds.
type latencyHistogram struct {
	counts [len(commitBounds) + 1]atomic.Uint64 // one per bound, then +Inf
	nanos  atomic.Uint64
}

func (h *latencyHistogram) observe(d time.Duration) {
	i := sort.SearchFloat64s(commitBounds[:], d.Seconds())
	h.counts[i].Add(1)
	h.nanos.Add(uint64(d))
}

// snapshot returns the histogram's current counts.
func (h *latencyHistogram) snapshot() status.Histogram {
	out := status.Histogram{Bounds: commitBounds[:], Counts: make([]uint64, len(h.counts)), Sum: time.Duration(h.nanos.Load())}
	for i := range h.counts {
		out.Counts[i] = h.counts[i].Load()
		out.Count += out.Counts[i]
	}
	return out
}
