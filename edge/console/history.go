package console

import (
	"context"
	"sync"
	"time"
)

// Counters are a node's cumulative counters at one instant, as History
// samples them.
type Counters struct {
	// Events counts the events the agents processed.
	Events uint64
	// DeadLetters counts the events refused (sent to the dead letters).
	DeadLetters uint64
	// Commits counts the commits, CommitTime their total duration.
	Commits    uint64
	CommitTime time.Duration
}

// Point is one sample of a History: what happened between the previous
// sample and Time.
type Point struct {
	Time time.Time `json:"t"`
	// EventsPerSecond is the rate of events processed.
	EventsPerSecond float64 `json:"events_per_s"`
	// DeadLetters counts the events refused in the interval.
	DeadLetters uint64 `json:"dead_letters"`
	// Commits counts the commits in the interval; CommitMillis is their
	// mean duration in milliseconds (absent without a commit).
	Commits      uint64   `json:"commits"`
	CommitMillis *float64 `json:"commit_ms,omitempty"`
}

// History is a ring buffer of the last samples of a node's counters: a
// few minutes of throughput, dead letters and commit latency for the
// console's charts, without an external time-series store. It is safe for
// concurrent use.
type History struct {
	mu     sync.Mutex
	points []Point // ring of len cap; next is the oldest once full
	next   int
	last   Counters
	lastT  time.Time
}

// DefaultSize is the points a History keeps by default: ten minutes at
// one sample a second.
const DefaultSize = 600

// NewHistory returns a History of size points (DefaultSize if size < 1).
func NewHistory(size int) *History {
	if size < 1 {
		size = DefaultSize
	}
	return &History{points: make([]Point, 0, size)}
}

// Add records the counters c read at now. The first call sets the base
// line and records no point; a counter lower than before (a restart of
// the counters) counts as no change.
func (h *History) Add(now time.Time, c Counters) {
	h.mu.Lock()
	defer h.mu.Unlock()
	prev, prevT := h.last, h.lastT
	h.last, h.lastT = c, now
	if prevT.IsZero() {
		return
	}
	dt := now.Sub(prevT).Seconds()
	if dt <= 0 {
		return
	}
	p := Point{Time: now.Round(0).Truncate(time.Millisecond),
		EventsPerSecond: float64(delta(c.Events, prev.Events)) / dt,
		DeadLetters:     delta(c.DeadLetters, prev.DeadLetters),
		Commits:         delta(c.Commits, prev.Commits),
	}
	if p.Commits > 0 && c.CommitTime >= prev.CommitTime {
		ms := float64(c.CommitTime-prev.CommitTime) / float64(time.Millisecond) / float64(p.Commits)
		p.CommitMillis = &ms
	}
	if len(h.points) < cap(h.points) {
		h.points = append(h.points, p)
		return
	}
	h.points[h.next] = p
	h.next = (h.next + 1) % len(h.points)
}

func delta(now, before uint64) uint64 {
	if now < before {
		return 0
	}
	return now - before
}

// Points returns the points later than since (all for the zero time),
// oldest first.
func (h *History) Points(since time.Time) []Point {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Point, 0, len(h.points))
	for i := range h.points {
		p := h.points[(h.next+i)%len(h.points)]
		if p.Time.After(since) {
			out = append(out, p)
		}
	}
	return out
}

// Run samples read every interval until ctx ends. It blocks: its caller
// owns the goroutine that runs it.
func (h *History) Run(ctx context.Context, interval time.Duration, read func() Counters) {
	h.Add(time.Now(), read())
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			h.Add(now, read())
		}
	}
}
