package manager

import (
	"bytes"
	"testing"
	"time"
)

func TestClosingStateCovers(t *testing.T) {
	t1 := time.Date(2026, 1, 1, 0, 2, 0, 0, time.UTC)
	k := func(s string) []byte { return windowKey([]byte(s), time.Unix(0, 0)) }
	cases := []struct {
		name string
		c    closingState
		at   time.Time
		sk   []byte
		want bool
	}{
		{"horizon only", closingState{horizon: t1}, t1, k("a"), false},
		{"old record: horizon only", closingState{horizon: t1}, t1.Add(-time.Hour), k("a"), false},
		{"all keys, before", closingState{horizon: t1, through: t1, complete: true}, t1.Add(-time.Second), k("z"), true},
		{"all keys, at", closingState{horizon: t1, through: t1, complete: true}, t1, k("z"), true},
		{"all keys, after", closingState{horizon: t1, through: t1, complete: true}, t1.Add(time.Nanosecond), k("a"), false},
		{"up to a key, same time, key before", closingState{horizon: t1, through: t1, throughKey: k("m"), complete: true}, t1, k("b"), true},
		{"up to a key, same time, that key", closingState{horizon: t1, through: t1, throughKey: k("m"), complete: true}, t1, k("m"), true},
		{"up to a key, same time, key after", closingState{horizon: t1, through: t1, throughKey: k("m"), complete: true}, t1, k("n"), false},
		{"up to a key, earlier time", closingState{horizon: t1, through: t1, throughKey: k("m"), complete: true}, t1.Add(-time.Second), k("z"), true},
	}
	for _, c := range cases {
		if got := c.c.covers(c.at, c.sk); got != c.want {
			t.Errorf("%s: covers = %v, want %v", c.name, got, c.want)
		}
		// The record round-trips.
		d, err := decodeClosing("t", c.c.encode())
		if err != nil {
			t.Fatalf("%s: decode: %v", c.name, err)
		}
		if !d.horizon.Equal(c.c.horizon) || d.complete != c.c.complete || (d.complete && !d.through.Equal(c.c.through)) ||
			!bytes.Equal(d.throughKey, c.c.throughKey) || (d.throughKey == nil) != (c.c.throughKey == nil) {
			t.Errorf("%s: decoded %+v, want %+v", c.name, d, c.c)
		}
	}
}

func FuzzDecodeClosing(f *testing.F) {
	f.Add([]byte{})
	f.Add(closingState{horizon: time.Unix(5, 0)}.encode())
	f.Add(closingState{horizon: time.Unix(5, 0), through: time.Unix(4, 0), complete: true}.encode())
	f.Add(closingState{horizon: time.Unix(5, 0), through: time.Unix(4, 0), throughKey: windowKey([]byte("k"), time.Unix(1, 0)), complete: true}.encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeClosing("t", b)
		if err != nil {
			return
		}
		if got := c.encode(); !bytes.Equal(got, b) {
			t.Fatalf("decode then encode of %x gave %x", b, got)
		}
	})
}
