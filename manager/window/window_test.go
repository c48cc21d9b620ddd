package window

import (
	"testing"
	"time"
)

// at returns the instant s seconds after the Unix epoch.
func at(s float64) time.Time { return time.Unix(0, int64(s*1e9)).UTC() }

func win(start, end float64) Window { return Window{Start: at(start), End: at(end)} }

func TestWindowsContaining(t *testing.T) {
	sec := time.Second
	cases := []struct {
		name string
		ws   Windows
		t    time.Time
		want []Window
	}{
		{"tumbling at a start", Tumbling(10*sec, 0), at(10), []Window{win(10, 20)}},
		{"tumbling inside", Tumbling(10*sec, 0), at(17), []Window{win(10, 20)}},
		{"tumbling just before the end", Tumbling(10*sec, 0), time.Unix(19, 999999999), []Window{win(10, 20)}},
		{"tumbling at the end is the next window", Tumbling(10*sec, 0), at(20), []Window{win(20, 30)}},
		{"tumbling before the epoch", Tumbling(10*sec, 0), at(-3), []Window{win(-10, 0)}},
		{"tumbling step zero", Windows{Size: 10 * sec}, at(5), []Window{win(0, 10)}},
		{"hopping overlap", Hopping(10*sec, 5*sec, 0), at(7), []Window{win(0, 10), win(5, 15)}},
		{"hopping at a step boundary", Hopping(10*sec, 5*sec, 0), at(5), []Window{win(0, 10), win(5, 15)}},
		{"hopping just before a step", Hopping(10*sec, 5*sec, 0), time.Unix(4, 999999999), []Window{win(-5, 5), win(0, 10)}},
		{"hopping, step not dividing size", Hopping(10*sec, 3*sec, 0), at(10), []Window{win(3, 13), win(6, 16), win(9, 19)}},
		{"hopping, four overlaps", Hopping(4*sec, sec, 0), at(2.5), []Window{win(-1, 3), win(0, 4), win(1, 5), win(2, 6)}},
	}
	for _, c := range cases {
		got := c.ws.Containing(c.t)
		if len(got) != len(c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
			continue
		}
		for i := range got {
			if !got[i].Start.Equal(c.want[i].Start) || !got[i].End.Equal(c.want[i].End) {
				t.Errorf("%s: %v, want %v", c.name, got, c.want)
				break
			}
			if !got[i].Contains(c.t) {
				t.Errorf("%s: window %v does not contain %s", c.name, got[i], c.t)
			}
		}
		if cur := c.ws.Current(c.t); !cur.Start.Equal(c.want[len(c.want)-1].Start) {
			t.Errorf("%s: Current = %v, want the last of %v", c.name, cur, c.want)
		}
	}
}

func TestWindowsClosed(t *testing.T) {
	sec := time.Second
	cases := []struct {
		name   string
		ws     Windows
		w      Window
		now    time.Time
		closed bool
	}{
		{"open before its end", Tumbling(10*sec, 5*sec), win(0, 10), at(9), false},
		{"open after its end, within expires (late events accepted)", Tumbling(10*sec, 5*sec), win(0, 10), at(14.9), false},
		{"closed at end plus expires", Tumbling(10*sec, 5*sec), win(0, 10), at(15), true},
		{"closed long after", Tumbling(10*sec, 5*sec), win(0, 10), at(1000), true},
		{"expires defaults to the size", Tumbling(10*sec, 0), win(0, 10), at(19.9), false},
		{"expires defaults to the size, closed", Tumbling(10*sec, 0), win(0, 10), at(20), true},
		{"hopping, own expires", Hopping(10*sec, 5*sec, sec), win(5, 15), at(16), true},
	}
	for _, c := range cases {
		if got := c.ws.Closed(c.w, c.now); got != c.closed {
			t.Errorf("%s: Closed = %v, want %v", c.name, got, c.closed)
		}
	}
}

// A late event after expiry reaches no open window: of a hopping event's
// windows, only the closed ones are skipped.
func TestWindowsLateEvent(t *testing.T) {
	ws := Hopping(10*time.Second, 5*time.Second, 2*time.Second)
	now := at(13) // [0,10) closed at 12; [5,15) open until 17
	var open []Window
	for _, w := range ws.Containing(at(7)) {
		if !ws.Closed(w, now) {
			open = append(open, w)
		}
	}
	if len(open) != 1 || !open[0].Start.Equal(at(5)) {
		t.Fatalf("open windows of a late event: %v, want only [5,15)", open)
	}
	for _, w := range ws.Containing(at(4)) { // [-5,5) and [0,10): both closed
		if !ws.Closed(w, now) {
			t.Errorf("window %v open at %s", w, now)
		}
	}
}

func TestWindowsInvalid(t *testing.T) {
	for _, ws := range []Windows{
		{},
		{Size: time.Microsecond},
		{Size: time.Second, Step: 2 * time.Second},
		{Size: time.Second, Step: -time.Second},
		{Size: time.Second, Expires: -1},
		{Size: time.Hour, Step: time.Second},
	} {
		if _, err := ws.WithDefaults(); err == nil {
			t.Errorf("%+v accepted", ws)
		}
	}
}

func TestParseTimeSource(t *testing.T) {
	good := map[string]TimeSource{
		"stream":      {Kind: TimeStream},
		"now":         {Kind: TimeNow},
		"json:ts":     {Kind: TimeField, Name: "ts"},
		"json:a.b":    {Kind: TimeField, Name: "a.b"},
		"header:Time": {Kind: TimeHeader, Name: "Time"},
	}
	for in, want := range good {
		got, err := ParseTimeSource(in)
		if err != nil || got != want {
			t.Errorf("%q = %+v, %v; want %+v", in, got, err, want)
		}
		if got.String() != in {
			t.Errorf("%q prints as %q", in, got.String())
		}
	}
	for _, in := range []string{"", "wall", "json:", "json:a..b", "header:", "subject:2"} {
		if _, err := ParseTimeSource(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}
