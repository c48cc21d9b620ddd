package manager

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultMaxClockSkew is the default WindowedTableConfig.MaxClockSkew.
const DefaultMaxClockSkew = time.Hour

// unsetClockBefore: a clock reading before it is taken for a clock that
// was never set (a device without a real-time clock starts at 1970 until
// NTP sets it). A jump forward from such a clock is followed at once, and
// event times are not compared with it.
var unsetClockBefore = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// The event times a windowed table accepts: from the Unix epoch to 2200.
// Window starts and closing times are int64 nanoseconds (up to 2262), with
// room left for a window's size and expiry.
var (
	minEventTime = time.Unix(0, 0).UTC()
	maxEventTime = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// checkEventTime returns an error wrapping ErrEventTime when ts is outside
// the times a windowed table accepts.
func checkEventTime(ts time.Time) error {
	if ts.Before(minEventTime) || !ts.Before(maxEventTime) {
		return fmt.Errorf("%w: %s is outside the range windowed tables accept (%s to %s)", ErrEventTime,
			ts.UTC().Format(time.RFC3339Nano), minEventTime.Format(time.RFC3339), maxEventTime.Format(time.RFC3339))
	}
	return nil
}

// checkAhead returns an error wrapping ErrEventTime when ts is more than
// skew ahead of wall, the node's clock. A clock not yet set (before 2025)
// judges nothing, nor does a negative skew.
func checkAhead(ts, wall time.Time, skew time.Duration) error {
	if skew < 0 || wall.Before(unsetClockBefore) || !ts.After(wall.Add(skew)) {
		return nil
	}
	return fmt.Errorf("%w: %s is %s ahead of this node's clock %s (more than the max clock skew %s)", ErrEventTime,
		ts.UTC().Format(time.RFC3339Nano), roughDuration(ts.Sub(wall)), wall.UTC().Format(time.RFC3339), roughDuration(skew))
}

// parseTime reads an RFC 3339 time or a number of Unix seconds.
func parseTime(name, v string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	f, err := strconv.ParseFloat(v, 64)
	switch {
	case err != nil && !errors.Is(err, strconv.ErrRange): // out of range: ±Inf, refused below
		return time.Time{}, fmt.Errorf("%w: time %s %q: want RFC 3339 or Unix seconds", ErrBadEvent, name, v)
	case math.IsNaN(f) || math.IsInf(f, 0):
		return time.Time{}, fmt.Errorf("%w: time %s %q is not a finite number of seconds", ErrEventTime, name, v)
	case f < float64(minEventTime.Unix()) || f >= float64(maxEventTime.Unix()):
		return time.Time{}, fmt.Errorf("%w: time %s %q: Unix seconds outside the range windowed tables accept (%d to %d)",
			ErrEventTime, name, v, minEventTime.Unix(), maxEventTime.Unix())
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(math.Round(frac*1e9))).UTC(), nil
}

// roughDuration writes d in its largest unit: 4y, 3d, or as time.Duration
// writes it, rounded to the second and without zero units (1h, 1h30m).
func roughDuration(d time.Duration) string {
	const day = 24 * time.Hour
	switch {
	case d >= 365*day:
		return strconv.FormatInt(int64(d/(365*day)), 10) + "y"
	case d >= day:
		return strconv.FormatInt(int64(d/day), 10) + "d"
	case d >= time.Second:
		d = d.Round(time.Second)
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// tableClock is a windowed table's closing clock: the node's clock, except
// after a jump ahead of more than the skew, which it does not follow at
// once. It closes windows, its readings are the closing horizons that
// partitions persist, and it is "now" for TimeNow and for reads.
//
// The rule. The clock keeps a reference: its last trusted reading of the
// node's clock, carried forward by the monotonic clock (which wall-clock
// steps do not move). A reading no more than the skew ahead of the
// reference (or behind it: the persisted horizon covers clocks that go
// back) is trusted and becomes the reference. A reading further ahead is
// a jump: the closing clock gives the reference instead, so windows do not
// close early and no horizon ahead of it is persisted, until
//   - the node's clock comes back within the skew (a bad NTP step undone);
//   - an event time read from the payload or a header (clocks of other
//     devices) agrees with the node's clock within the skew: the jump was
//     a correction (one agreeing with the reference instead restarts the
//     next wait);
//   - the node's clock has kept the jump for as long as the skew: it is
//     then taken for a correction (a node that started with its clock
//     behind and was set by NTP later);
//   - or the reference was before 2025: a clock never set (no real-time
//     clock, before NTP) is followed at once.
//
// Stream times are not taken as evidence: on a single node the stream's
// clock is the node's clock. A clock beyond 2200 is never followed. A
// restart trusts the clock it starts with, as before.
type tableClock struct {
	wall func() time.Time
	mono func() time.Duration
	skew time.Duration // negative: the node's clock, unchecked
	log  *slog.Logger  // nil: slog.Default()

	mu      sync.Mutex
	set     bool          // ref holds a trusted reading
	ref     time.Time     // the last trusted reading of wall
	refMono time.Duration // mono at that reading
	ahead   bool          // wall jumped ahead of the reference
	since   time.Duration // mono when the jump was seen, or last contradicted
}

// processStart anchors the monotonic clock of every table.
var processStart = time.Now()

func monotonic() time.Duration { return time.Since(processStart) }

// clockReading is one reading of a table's clock.
type clockReading struct {
	wall time.Time // the node's clock
	now  time.Time // the table's closing clock
}

// logger returns the table's logger. c.mu must be held.
func (c *tableClock) logger() *slog.Logger {
	if c.log != nil {
		return c.log
	}
	return slog.Default()
}

// read returns the node's clock and the closing clock.
func (c *tableClock) read() clockReading {
	w := c.wall()
	sane := w.Before(maxEventTime)
	if c.skew < 0 {
		if !sane {
			return clockReading{wall: w, now: maxEventTime}
		}
		return clockReading{wall: w, now: w}
	}
	m := c.mono()
	c.mu.Lock()
	log := c.logger()
	if !c.set || c.ref.Before(unsetClockBefore) {
		if !sane && !c.set {
			c.mu.Unlock()
			return clockReading{wall: w, now: minEventTime} // no reference: the horizon alone closes
		}
		if sane {
			c.trust(w, m)
			c.mu.Unlock()
			return clockReading{wall: w, now: w}
		}
	}
	x := c.ref.Add(m - c.refMono)
	var note func()
	r := clockReading{wall: w, now: x}
	switch {
	case sane && !w.After(x.Add(c.skew)):
		if c.ahead {
			note = func() {
				log.Warn("the node's clock came back from its jump ahead; windows close by it again", "clock", w)
			}
		}
		c.trust(w, m)
		r.now = w
	case !c.ahead:
		c.ahead, c.since = true, m
		note = func() {
			log.Warn("the node's clock jumped ahead by more than the max clock skew; windows close by the clock as it ran before the jump until the clock comes back, event times confirm it, or it keeps the jump for the skew",
				"clock", w, "closing_clock", x, "jump", roughDuration(w.Sub(x)), "max_clock_skew", c.skew)
		}
	case sane && m-c.since >= c.skew:
		c.trust(w, m)
		r.now = w
		note = func() {
			log.Warn("the node's clock kept its jump ahead for the max clock skew: following it, windows up to it close",
				"clock", w, "jump", roughDuration(w.Sub(x)), "max_clock_skew", c.skew)
		}
	}
	c.mu.Unlock()
	if note != nil {
		note()
	}
	return r
}

// trust makes w, read at m, the reference. c.mu must be held.
func (c *tableClock) trust(w time.Time, m time.Duration) {
	c.set, c.ref, c.refMono, c.ahead = true, w, m, false
}

// vouch takes ts, an accepted event time read from an event's payload or
// header with reading r, as evidence: while the node's clock is ahead of
// the reference, a ts that agrees with it confirms the jump, and one that
// agrees with the reference restarts the wait for it.
func (c *tableClock) vouch(ts time.Time, r clockReading) {
	if c.skew < 0 {
		return
	}
	near := func(a, b time.Time) bool { d := a.Sub(b); return d <= c.skew && d >= -c.skew }
	c.mu.Lock()
	if !c.ahead {
		c.mu.Unlock()
		return
	}
	m := c.mono()
	switch {
	case near(ts, r.wall) && r.wall.Before(maxEventTime):
		c.trust(r.wall, m)
		log := c.logger()
		c.mu.Unlock()
		log.Warn("an event time agrees with the node's clock that jumped ahead: following it, windows up to it close",
			"clock", r.wall, "event_time", ts)
		return
	case near(ts, r.now):
		c.since = m
	}
	c.mu.Unlock()
}
