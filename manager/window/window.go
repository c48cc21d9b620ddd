package window

import (
	"fmt"
	"math"
	"time"
)

// maxWindowsPerEvent bounds Size/Step: an event updates that many windows
// of a hopping table, each one key written and committed; it stays below
// the headroom the manager's exactly-once mode keeps in a commit (100 keys).
const maxWindowsPerEvent = 64

// Window is the half-open time range [Start, End) of one window.
type Window struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// Contains reports whether t falls in w.
func (w Window) Contains(t time.Time) bool { return !t.Before(w.Start) && t.Before(w.End) }

// String returns w as [start, end) in RFC 3339, UTC.
func (w Window) String() string {
	return "[" + w.Start.UTC().Format(time.RFC3339Nano) + ", " + w.End.UTC().Format(time.RFC3339Nano) + ")"
}

// Windows says how a windowed table cuts time: windows of Size starting
// every Step, aligned on the Unix epoch (a window starts at every multiple
// of Step since 1970-01-01T00:00:00Z), each kept until Expires after its
// end.
//
// A window closes when the table's clock reaches its end plus Expires (see
// manager.WindowedTableConfig.Clock). Until then it accepts events (late
// ones included) and is readable; at that moment the table's OnWindowClose
// is called with its final value and it is removed from the store and the
// changelog. An event whose every window is closed is refused with
// manager.ErrWindowClosed.
type Windows struct {
	// Size is the length of a window. Required, at least 1ms.
	Size time.Duration
	// Step is the time between the starts of two windows: 0 or Size for
	// tumbling windows (each instant in exactly one window), less than Size
	// for hopping windows (each instant in Size/Step windows, rounded up;
	// an event updates all of them). At most 64 windows may overlap.
	Step time.Duration
	// Expires is how long a window stays open after its end, accepting late
	// events and answering reads (0: one Size). Longer tolerates later
	// events and keeps more windows in the store.
	Expires time.Duration
}

// Tumbling returns windows of size that do not overlap, each expiring
// expires after its end (0: one size).
func Tumbling(size, expires time.Duration) Windows {
	return Windows{Size: size, Step: size, Expires: expires}
}

// Hopping returns windows of size starting every step, each expiring
// expires after its end (0: one size).
func Hopping(size, step, expires time.Duration) Windows {
	return Windows{Size: size, Step: step, Expires: expires}
}

// WithDefaults returns ws with Step and Expires filled in (0: Size), or
// the error Validate returns.
func (ws Windows) WithDefaults() (Windows, error) {
	if ws.Step == 0 {
		ws.Step = ws.Size
	}
	if ws.Expires == 0 {
		ws.Expires = ws.Size
	}
	switch {
	case ws.Size < time.Millisecond:
		return ws, fmt.Errorf("window size %s: want at least 1ms", ws.Size)
	case ws.Step < 0 || ws.Step > ws.Size:
		return ws, fmt.Errorf("window step %s: want more than 0 and at most the size %s", ws.Step, ws.Size)
	case ws.Expires < 0:
		return ws, fmt.Errorf("window expires %s is negative", ws.Expires)
	case (ws.Size+ws.Step-1)/ws.Step > maxWindowsPerEvent:
		return ws, fmt.Errorf("window size %s with step %s: more than %d overlapping windows", ws.Size, ws.Step, maxWindowsPerEvent)
	}
	return ws, nil
}

// Validate checks ws as adding its table would: Size at least 1ms, Step
// from 0 to Size, Expires not negative, at most 64 overlapping windows.
func (ws Windows) Validate() error {
	_, err := ws.WithDefaults()
	return err
}

// Hopping reports whether windows overlap.
func (ws Windows) Hopping() bool { return ws.Step != 0 && ws.Step != ws.Size }

// window returns the window starting at start (Unix nanoseconds).
func (ws Windows) window(start int64) Window {
	return Window{Start: time.Unix(0, start).UTC(), End: time.Unix(0, start).Add(ws.Size).UTC()}
}

// closeAt returns the instant w closes: its end plus Expires.
func (ws Windows) closeAt(w Window) time.Time { return w.End.Add(ws.Expires) }

// floorMultiple returns the largest multiple of d at or below x.
func floorMultiple(x, d int64) int64 {
	m := x % d
	if m < 0 {
		m += d
	}
	return x - m
}

// nanos returns t in Unix nanoseconds, and false when int64 nanoseconds
// cannot hold t (before 1678 or after 2262).
func nanos(t time.Time) (int64, bool) {
	if t.Before(time.Unix(0, math.MinInt64)) || t.After(time.Unix(0, math.MaxInt64)) {
		return 0, false
	}
	return t.UnixNano(), true
}

// startable returns t in Unix nanoseconds, and whether the starts of the
// windows holding t fit in int64 nanoseconds. ws has its defaults.
func (ws Windows) startable(t time.Time) (int64, bool) {
	ts, ok := nanos(t)
	if !ok || ts < math.MinInt64+int64(ws.Size) || ts-int64(ws.Size) < math.MinInt64+int64(ws.Step) {
		return 0, false
	}
	return ts, true
}

// Containing returns every window that contains t, oldest first: one for
// tumbling windows, up to ⌈Size/Step⌉ for hopping ones; none when t is
// too far from the Unix epoch for a window start in int64 nanoseconds
// (before 1678 plus Size, or after 2262). Windows must be valid (as
// checked when the table is added).
func (ws Windows) Containing(t time.Time) []Window {
	ws, err := ws.WithDefaults()
	if err != nil {
		return nil
	}
	ts, ok := ws.startable(t)
	if !ok {
		return nil
	}
	last := floorMultiple(ts, int64(ws.Step))
	// Starts s with s <= ts < s+Size, i.e. ts-Size < s <= last.
	first := floorMultiple(ts-int64(ws.Size), int64(ws.Step)) + int64(ws.Step)
	out := make([]Window, 0, (last-first)/int64(ws.Step)+1)
	for s := first; s <= last; s += int64(ws.Step) {
		out = append(out, ws.window(s))
	}
	return out
}

// Current returns the most recent window containing t (the one starting
// last): for tumbling windows, the only one. It is the zero Window when t
// has no window (see Containing).
func (ws Windows) Current(t time.Time) Window {
	ws, err := ws.WithDefaults()
	if err != nil {
		return Window{}
	}
	ts, ok := ws.startable(t)
	if !ok {
		return Window{}
	}
	return ws.window(floorMultiple(ts, int64(ws.Step)))
}

// Closed reports whether window w is closed at instant now: now has reached
// w's end plus Expires.
func (ws Windows) Closed(w Window, now time.Time) bool {
	ws, err := ws.WithDefaults()
	if err != nil {
		return true
	}
	return !now.Before(ws.closeAt(w))
}
