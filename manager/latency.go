package manager

import (
	"sort"
	"sync/atomic"
	"time"
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
func (h *latencyHistogram) snapshot() Histogram {
	out := Histogram{Bounds: commitBounds[:], Counts: make([]uint64, len(h.counts)), Sum: time.Duration(h.nanos.Load())}
	for i := range h.counts {
		out.Counts[i] = h.counts[i].Load()
		out.Count += out.Counts[i]
	}
	return out
}

// Histogram is a snapshot of a latency histogram.
type Histogram struct {
	// Bounds are the buckets' upper bounds in seconds, ascending; Counts
	// the observations per bucket (not cumulative), with one more for
	// those above the last bound.
	Bounds []float64 `json:"bounds_s"`
	Counts []uint64  `json:"counts"`
	// Count is the number of observations; Sum their total duration.
	Count uint64        `json:"count"`
	Sum   time.Duration `json:"sum_ns"`
}

// Cumulative returns, per upper bound, the observations at or below it (the
// form Prometheus histograms take).
func (h Histogram) Cumulative() map[float64]uint64 {
	out := make(map[float64]uint64, len(h.Bounds))
	var n uint64
	for i, b := range h.Bounds {
		n += h.Counts[i]
		out[b] = n
	}
	return out
}
