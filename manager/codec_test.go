package manager

import (
	"bytes"
	"math"
	"sort"
	"testing"
)

func TestInt64CodecOrder(t *testing.T) {
	vals := []int64{math.MinInt64, -5, -1, 0, 1, 7, 1 << 40, math.MaxInt64}
	var enc [][]byte
	for _, v := range vals {
		b, _ := Int64Codec{}.Encode(v)
		got, err := Int64Codec{}.Decode(b)
		if err != nil || got != v {
			t.Fatalf("round trip %d = %d, %v", v, got, err)
		}
		enc = append(enc, b)
	}
	if !sort.SliceIsSorted(enc, func(i, j int) bool { return bytes.Compare(enc[i], enc[j]) < 0 }) {
		t.Error("encoded int64s do not sort numerically")
	}
	if _, err := (Int64Codec{}).Decode([]byte{1, 2}); err == nil {
		t.Error("short input decoded")
	}
}

func TestCodecsRoundTrip(t *testing.T) {
	f, _ := Float64Codec{}.Encode(-2.5)
	if v, err := (Float64Codec{}).Decode(f); err != nil || v != -2.5 {
		t.Errorf("float64 round trip = %v, %v", v, err)
	}
	type point struct{ X, Y int }
	j, _ := JSONCodec[point]{}.Encode(point{1, 2})
	if v, err := (JSONCodec[point]{}).Decode(j); err != nil || v != (point{1, 2}) {
		t.Errorf("json round trip = %v, %v", v, err)
	}
	if _, err := (JSONCodec[point]{}).Decode([]byte("{")); err == nil {
		t.Error("bad JSON decoded")
	}
}

func FuzzInt64Codec(f *testing.F) {
	f.Add(int64(0))
	f.Add(int64(-1))
	f.Fuzz(func(t *testing.T, v int64) {
		b, _ := Int64Codec{}.Encode(v)
		got, err := Int64Codec{}.Decode(b)
		if err != nil || got != v {
			t.Fatalf("%d -> %x -> %d, %v", v, b, got, err)
		}
	})
}

func TestPartitionOf(t *testing.T) {
	// FNV-1a 32 of "" is 0x811c9dc5; of "a" is 0xe40c292c.
	cases := []struct {
		key  string
		n    int
		want int
	}{
		{"", 8, 0x811c9dc5 % 8},
		{"a", 8, 0xe40c292c % 8},
		{"a", 1, 0},
		{"a", 0, 0},
	}
	for _, c := range cases {
		if got := PartitionOf([]byte(c.key), c.n); got != c.want {
			t.Errorf("PartitionOf(%q, %d) = %d, want %d", c.key, c.n, got, c.want)
		}
	}
}
