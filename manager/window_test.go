package manager

import (
	"bytes"
	"testing"
	"time"

	"github.com/edgetables/edgetables/manager/port"
	"github.com/edgetables/edgetables/manager/window"
)

// at returns the instant s seconds after the Unix epoch.
func at(s float64) time.Time { return time.Unix(0, int64(s*1e9)).UTC() }

func win(start, end float64) window.Window { return window.Window{Start: at(start), End: at(end)} }

// Window keys keep a key's windows together and in time order, before and
// after the epoch, and split back.
func TestWindowKeyOrder(t *testing.T) {
	starts := []time.Time{at(-20), at(-10), at(0), at(10), at(1e9)}
	var prev []byte
	for _, s := range starts {
		k := windowKey([]byte("dev"), s)
		if prev != nil && bytes.Compare(prev, k) >= 0 {
			t.Fatalf("key of %s does not sort after the previous", s)
		}
		prev = k
		kb, start, ok := splitWindowKey(k)
		if !ok || string(kb) != "dev" || start != s.UnixNano() {
			t.Fatalf("split %x = %q %d %v", k, kb, start, ok)
		}
	}
}

func TestEventTime(t *testing.T) {
	mk := func(data string, hdr map[string][]string) *Event {
		return &Event{Data: []byte(data), Header: hdr, Time: at(5), msg: &message{SourceMessage: port.SourceMessage{Data: []byte(data)}}}
	}
	now := at(99)
	cases := []struct {
		src  window.TimeSource
		e    *Event
		want time.Time
		bad  bool
	}{
		{window.TimeSource{}, mk(`{}`, nil), at(5), false},
		{window.TimeSource{Kind: window.TimeNow}, mk(`{}`, nil), now, false},
		{window.TimeSource{Kind: window.TimeField, Name: "ts"}, mk(`{"ts": 12.5}`, nil), at(12.5), false},
		{window.TimeSource{Kind: window.TimeField, Name: "m.ts"}, mk(`{"m": {"ts": "1970-01-01T00:00:07Z"}}`, nil), at(7), false},
		{window.TimeSource{Kind: window.TimeField, Name: "ts"}, mk(`{"ts": true}`, nil), time.Time{}, true},
		{window.TimeSource{Kind: window.TimeField, Name: "ts"}, mk(`{}`, nil), time.Time{}, true},
		{window.TimeSource{Kind: window.TimeField, Name: "ts"}, mk(`{"ts": "yesterday"}`, nil), time.Time{}, true},
		{window.TimeSource{Kind: window.TimeHeader, Name: "T"}, mk(`x`, map[string][]string{"T": {"3"}}), at(3), false},
		{window.TimeSource{Kind: window.TimeHeader, Name: "T"}, mk(`x`, nil), time.Time{}, true},
	}
	for i, c := range cases {
		got, err := eventTime(c.src, c.e, now)
		if c.bad {
			if err == nil {
				t.Errorf("case %d (%s): accepted, got %s", i, c.src, got)
			}
			continue
		}
		if err != nil || !got.Equal(c.want) {
			t.Errorf("case %d (%s): %s, %v; want %s", i, c.src, got, err, c.want)
		}
	}
}
