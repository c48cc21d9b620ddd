package manager

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/edgetables/edgetables/manager/window"
)

// TestTableClock drives a table's closing clock through readings of the
// node's clock (wall) at monotonic times (mono), checking the closing
// clock each gives.
func TestTableClock(t *testing.T) {
	t0 := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	year := 365 * 24 * time.Hour
	type step struct {
		mono  time.Duration
		wall  time.Time
		vouch time.Time // if set, an event time read after the reading
		want  time.Time // the closing clock
	}
	cases := []struct {
		name  string
		skew  time.Duration
		steps []step
	}{
		{"steady", time.Hour, []step{
			{0, t0, time.Time{}, t0},
			{time.Minute, t0.Add(time.Minute), time.Time{}, t0.Add(time.Minute)},
		}},
		{"small steps within the skew are followed", time.Hour, []step{
			{0, t0, time.Time{}, t0},
			{time.Second, t0.Add(59 * time.Minute), time.Time{}, t0.Add(59 * time.Minute)},
		}},
		{"a clock going back is followed (the horizon covers it)", time.Hour, []step{
			{0, t0, time.Time{}, t0},
			{time.Second, t0.Add(-48 * time.Hour), time.Time{}, t0.Add(-48 * time.Hour)},
		}},
		{"a jump ahead then back", time.Hour, []step{
			{0, t0, time.Time{}, t0},
			{time.Minute, t0.Add(year), time.Time{}, t0.Add(time.Minute)},
			{2 * time.Minute, t0.Add(year + time.Minute), time.Time{}, t0.Add(2 * time.Minute)},
			{3 * time.Minute, t0.Add(3 * time.Minute), time.Time{}, t0.Add(3 * time.Minute)},
			{4 * time.Minute, t0.Add(4 * time.Minute), time.Time{}, t0.Add(4 * time.Minute)},
		}},
		{"a jump kept for the skew is followed", time.Hour, []step{
			{0, t0, time.Time{}, t0},
			{time.Minute, t0.Add(24 * time.Hour), time.Time{}, t0.Add(time.Minute)},
			{time.Minute + 59*time.Minute, t0.Add(24*time.Hour + 59*time.Minute), time.Time{}, t0.Add(time.Hour)},
			{2 * time.Hour, t0.Add(25 * time.Hour), time.Time{}, t0.Add(25 * time.Hour)},
			{2*time.Hour + time.Second, t0.Add(25*time.Hour + time.Second), time.Time{}, t0.Add(25*time.Hour + time.Second)},
		}},
		{"an event time agreeing with the jump confirms it", time.Hour, []step{
			{0, t0, time.Time{}, t0},
			{time.Minute, t0.Add(24 * time.Hour), t0.Add(24*time.Hour - time.Minute), t0.Add(time.Minute)},
			{2 * time.Minute, t0.Add(24*time.Hour + time.Minute), time.Time{}, t0.Add(24*time.Hour + time.Minute)},
		}},
		{"event times agreeing with the reference hold the jump back", time.Hour, []step{
			{0, t0, time.Time{}, t0},
			{time.Minute, t0.Add(year), time.Time{}, t0.Add(time.Minute)},
			{50 * time.Minute, t0.Add(year + 49*time.Minute), t0.Add(50 * time.Minute), t0.Add(50 * time.Minute)},
			{90 * time.Minute, t0.Add(year + 89*time.Minute), time.Time{}, t0.Add(90 * time.Minute)},
			{110 * time.Minute, t0.Add(year + 109*time.Minute), time.Time{}, t0.Add(year + 109*time.Minute)},
		}},
		{"a clock never set (1970) is followed at once when set", time.Hour, []step{
			{0, time.Unix(30, 0), time.Time{}, time.Unix(30, 0)},
			{time.Minute, t0, time.Time{}, t0},
		}},
		{"a clock beyond 2200 is never followed", time.Hour, []step{
			{0, t0, time.Time{}, t0},
			{time.Minute, maxEventTime.Add(year), time.Time{}, t0.Add(time.Minute)},
			{3 * time.Hour, maxEventTime.Add(year), time.Time{}, t0.Add(3 * time.Hour)},
		}},
		{"starting beyond 2200: the horizon alone closes", time.Hour, []step{
			{0, maxEventTime.Add(year), time.Time{}, minEventTime},
		}},
		{"no bound", -1, []step{
			{0, t0, time.Time{}, t0},
			{time.Minute, t0.Add(year), time.Time{}, t0.Add(year)},
		}},
	}
	for _, c := range cases {
		var (
			mono time.Duration
			wall time.Time
		)
		clk := &tableClock{wall: func() time.Time { return wall }, mono: func() time.Duration { return mono }, skew: c.skew}
		for i, s := range c.steps {
			mono, wall = s.mono, s.wall
			r := clk.read()
			if !r.now.Equal(s.want) || !r.wall.Equal(s.wall) {
				t.Errorf("%s: step %d: closing clock %s (node's %s), want %s", c.name, i, r.now, r.wall, s.want)
			}
			if !s.vouch.IsZero() {
				clk.vouch(s.vouch, r)
			}
		}
	}
}

func TestCheckEventTime(t *testing.T) {
	wall := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	cases := []struct {
		ts   time.Time
		skew time.Duration
		want string // in the error; "" for none
	}{
		{wall, time.Hour, ""},
		{wall.Add(59 * time.Minute), time.Hour, ""},
		{wall.Add(-30 * 24 * time.Hour), time.Hour, ""},
		{wall.Add(61 * time.Minute), time.Hour, "1h1m ahead of this node's clock 2026-12-01T10:00:00Z (more than the max clock skew 1h)"},
		{time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC), time.Hour, "2031-01-01T00:00:00Z is 4y ahead of this node's clock"},
		{time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC), -1, ""},
		{time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), -1, "9999-01-01T00:00:00Z is outside the range windowed tables accept (1970-01-01T00:00:00Z to 2200-01-01T00:00:00Z)"},
		{time.Unix(-1, 0), time.Hour, "is outside the range"},
		{maxEventTime, -1, "is outside the range"},
	}
	for _, c := range cases {
		err := checkEventTime(c.ts)
		if err == nil {
			err = checkAhead(c.ts, wall, c.skew)
		}
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.ts, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: error %v, want one with %q", c.ts, err, c.want)
		case err != nil && (!errors.Is(err, ErrEventTime) || !errors.Is(err, ErrBadEvent)):
			t.Errorf("%s: %v does not wrap ErrEventTime and ErrBadEvent", c.ts, err)
		}
	}
	// A node whose clock was never set judges nothing.
	if err := checkAhead(wall, time.Unix(5, 0), time.Hour); err != nil {
		t.Errorf("clock at 1970: %v", err)
	}
}

func TestParseTime(t *testing.T) {
	cases := []struct {
		in   string
		want time.Time
		err  error // nil: accepted
	}{
		{"2026-01-01T00:00:00Z", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), nil},
		{"1767225600.5", time.Unix(1767225600, 5e8), nil},
		{"0", time.Unix(0, 0), nil},
		{"yesterday", time.Time{}, ErrBadEvent},
		{"NaN", time.Time{}, ErrEventTime},
		{"Inf", time.Time{}, ErrEventTime},
		{"-Inf", time.Time{}, ErrEventTime},
		{"1e400", time.Time{}, ErrEventTime},
		{"-5", time.Time{}, ErrEventTime},
		{"1e12", time.Time{}, ErrEventTime},
		{"7258118400", time.Time{}, ErrEventTime}, // 2200-01-01
	}
	for _, c := range cases {
		got, err := parseTime("ts", c.in)
		switch {
		case c.err == nil && (err != nil || !got.Equal(c.want)):
			t.Errorf("%q: %s, %v; want %s", c.in, got, err, c.want)
		case c.err != nil && !errors.Is(err, c.err):
			t.Errorf("%q: %s, %v; want an error wrapping %v", c.in, got, err, c.err)
		}
	}
	// RFC 3339 times out of range parse; the event's check refuses them.
	if ts, err := parseTime("ts", "9999-01-01T00:00:00Z"); err != nil || checkEventTime(ts) == nil {
		t.Errorf("9999: parsed %s, %v; then accepted", ts, err)
	}
}

func FuzzParseTime(f *testing.F) {
	for _, s := range []string{"2026-01-01T00:00:00Z", "1767225600.5", "NaN", "1e400", "-5", "9999-12-31T23:59:59Z", "0x1p62"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ts, err := parseTime("ts", s)
		if err != nil && !errors.Is(err, ErrBadEvent) {
			t.Fatalf("%q: error %v does not wrap ErrBadEvent", s, err)
		}
		if err != nil || checkEventTime(ts) != nil {
			return
		}
		// An accepted time has windows, and window keys round-trip.
		ws := window.Tumbling(time.Minute, 0)
		w := ws.Current(ts)
		if w.Start.IsZero() || !w.Contains(ts) {
			t.Fatalf("%q: %s in no window (%v)", s, ts, w)
		}
		if _, start, _ := splitWindowKey(windowKey([]byte("k"), w.Start)); start != w.Start.UnixNano() {
			t.Fatalf("%q: window key start %d, want %d", s, start, w.Start.UnixNano())
		}
	})
}

func TestRoughDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Hour:                       "1h",
		90 * time.Minute:                "1h30m",
		time.Minute:                     "1m",
		1500 * time.Millisecond:         "2s",
		300 * time.Millisecond:          "300ms",
		49 * time.Hour:                  "2d",
		4*365*24*time.Hour + time.Hour:  "4y",
		time.Hour + 30*time.Second:      "1h0m30s",
		time.Duration(math.MaxInt64):    "292y",
		2*time.Hour + 3*time.Minute + 0: "2h3m",
	} {
		if got := roughDuration(d); got != want {
			t.Errorf("roughDuration(%s) = %q, want %q", d, got, want)
		}
	}
}

func TestWindowsOutOfRange(t *testing.T) {
	ws := window.Hopping(time.Hour, time.Minute, 0)
	for _, ts := range []time.Time{
		time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2262, 4, 12, 0, 0, 0, 0, time.UTC),
		time.Date(1677, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Unix(0, math.MinInt64), // no room for the windows before it
	} {
		if got := ws.Containing(ts); got != nil {
			t.Errorf("Containing(%s) = %v, want none", ts, got)
		}
		if got := ws.Current(ts); !got.Start.IsZero() {
			t.Errorf("Current(%s) = %v, want the zero Window", ts, got)
		}
	}
	if got := ws.Containing(time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)); len(got) != 60 {
		t.Errorf("Containing(2200) gave %d windows, want 60", len(got))
	}
}
