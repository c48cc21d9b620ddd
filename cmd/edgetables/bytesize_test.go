package main

import "testing"

func TestByteSize(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		bad  bool
	}{
		{in: "0", want: 0},
		{in: "1073741824", want: 1 << 30},
		{in: "512MiB", want: 512 << 20},
		{in: "512mib", want: 512 << 20},
		{in: "2GiB", want: 2 << 30},
		{in: "2G", want: 2 << 30},
		{in: "2 GB", want: 2 << 30},
		{in: "64K", want: 64 << 10},
		{in: "100B", want: 100},
		{in: "1TiB", want: 1 << 40},
		{in: "", bad: true},
		{in: "-1", bad: true},
		{in: "1.5GiB", bad: true},
		{in: "lots", bad: true},
		{in: "9999999TiB", bad: true},
	} {
		var b byteSize
		err := b.UnmarshalText([]byte(c.in))
		switch {
		case c.bad && err == nil:
			t.Errorf("%q: %d, want an error", c.in, b)
		case !c.bad && (err != nil || int64(b) != c.want):
			t.Errorf("%q: %d, %v; want %d", c.in, b, err, c.want)
		}
	}
}
