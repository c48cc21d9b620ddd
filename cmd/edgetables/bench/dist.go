package bench

import (
	"math"
	"slices"
	"time"
)

// Distribution summarizes the samples of a figure measured more than once
// in a run (the failover's kills), in the Unit of its Result.
type Distribution struct {
	// Samples is how many there were.
	Samples int     `json:"samples"`
	Min     float64 `json:"min"`
	// Median is the middle sample (the mean of the two middle ones of an
	// even count); P90 the nearest-rank 90th percentile: the smallest
	// sample that at least 90% of the samples do not exceed (the 9th of
	// 10, the largest of fewer than 10).
	Median float64 `json:"median"`
	P90    float64 `json:"p90"`
	Max    float64 `json:"max"`
	// Limit is the bound of the figure's target (0: none); Within counts
	// the samples below it.
	Limit  float64 `json:"limit,omitempty"`
	Within int     `json:"within"`
}

// distribution returns the distribution of samples (not changed) with the
// count of those below limit (0: no limit). Nil for no samples.
func distribution(samples []float64, limit float64) *Distribution {
	if len(samples) == 0 {
		return nil
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	d := &Distribution{Samples: len(s), Min: s[0], Max: s[len(s)-1], P90: percentile(s, 90), Limit: limit}
	if n := len(s); n%2 == 1 {
		d.Median = s[n/2]
	} else {
		d.Median = (s[n/2-1] + s[n/2]) / 2
	}
	if limit > 0 {
		for _, v := range s {
			if v < limit {
				d.Within++
			}
		}
	}
	return d
}

// percentile returns the nearest-rank p-th percentile (0 < p ≤ 100) of
// sorted, which is not empty: the sample at rank ⌈p/100 · n⌉.
func percentile(sorted []float64, p float64) float64 {
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// withinShare reports whether at least num of every den samples were
// within the limit ("< 1 s in ≥ 9 of 10 kills": withinShare(9, 10)), and
// whether that can be judged: it takes at least den samples.
func (d *Distribution) withinShare(num, den int) (met, judged bool) {
	if d == nil || d.Samples < den {
		return false, false
	}
	return d.Within*den >= num*d.Samples, true
}

// inUnit converts durations to float64 samples in unit (a duration:
// d / unit).
func inUnit(ds []time.Duration, unit time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = float64(d) / float64(unit)
	}
	return out
}
