package codec

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"runtime"
	"sort"
	"testing"
)

func TestInt64CodecOrder(t *testing.T) {
	vals := []int64{math.MinInt64, -5, -1, 0, 1, 7, 1 << 40, math.MaxInt64}
	var enc [][]byte
	for _, v := range vals {
		b, _ := Int64{}.Encode(v)
		got, err := Int64{}.Decode(b)
		if err != nil || got != v {
			t.Fatalf("round trip %d = %d, %v", v, got, err)
		}
		enc = append(enc, b)
	}
	if !sort.SliceIsSorted(enc, func(i, j int) bool { return bytes.Compare(enc[i], enc[j]) < 0 }) {
		t.Error("encoded int64s do not sort numerically")
	}
	if _, err := (Int64{}).Decode([]byte{1, 2}); err == nil {
		t.Error("short input decoded")
	}
}

func TestCodecsRoundTrip(t *testing.T) {
	f, _ := Float64{}.Encode(-2.5)
	if v, err := (Float64{}).Decode(f); err != nil || v != -2.5 {
		t.Errorf("float64 round trip = %v, %v", v, err)
	}
	type point struct{ X, Y int }
	j, _ := JSON[point]{}.Encode(point{1, 2})
	if v, err := (JSON[point]{}).Decode(j); err != nil || v != (point{1, 2}) {
		t.Errorf("json round trip = %v, %v", v, err)
	}
	if _, err := (JSON[point]{}).Decode([]byte("{")); err == nil {
		t.Error("bad JSON decoded")
	}
}

func FuzzInt64Codec(f *testing.F) {
	f.Add(int64(0))
	f.Add(int64(-1))
	f.Fuzz(func(t *testing.T, v int64) {
		b, _ := Int64{}.Encode(v)
		got, err := Int64{}.Decode(b)
		if err != nil || got != v {
			t.Fatalf("%d -> %x -> %d, %v", v, b, got, err)
		}
	})
}

// FuzzCodecs decodes any bytes with every codec of this package: a decode
// never panics, and what decodes encodes back to the same bytes (for JSON,
// to a document that decodes to the same value).
func FuzzCodecs(f *testing.F) {
	i, _ := Int64{}.Encode(-42)
	fl, _ := Float64{}.Encode(math.Inf(-1))
	for _, b := range [][]byte{{}, i, fl, []byte(`{"a":[1,2.5,"x",null,true]}`), []byte(`"\ud800"`), []byte("1e400"), {0xff, 0xfe}} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if s, err := (String{}).Decode(b); err != nil || !bytes.Equal([]byte(s), b) {
			t.Fatalf("string codec: %q -> %q, %v", b, s, err)
		}
		if v, err := (Int64{}).Decode(b); err == nil {
			if got, _ := (Int64{}).Encode(v); !bytes.Equal(got, b) {
				t.Fatalf("int64 codec: %x -> %d -> %x", b, v, got)
			}
			if p, err := (Int64{}).ParseText(Int64{}.FormatText(v)); err != nil || p != v {
				t.Fatalf("int64 text: %d -> %d, %v", v, p, err)
			}
		} else if len(b) == 8 {
			t.Fatalf("int64 codec refused 8 bytes: %v", err)
		}
		if v, err := (Float64{}).Decode(b); err == nil {
			if got, _ := (Float64{}).Encode(v); !bytes.Equal(got, b) {
				t.Fatalf("float64 codec: %x -> %v -> %x", b, v, got)
			}
		}
		if v, err := (JSON[any]{}).Decode(b); err == nil {
			enc, err := JSON[any]{}.Encode(v)
			if err != nil {
				t.Fatalf("json codec: %q decoded to %v, which does not encode: %v", b, v, err)
			}
			again, err := JSON[any]{}.Decode(enc)
			if err != nil || !reflect.DeepEqual(again, v) {
				t.Fatalf("json codec: %q -> %v -> %q -> %v, %v", b, v, enc, again, err)
			}
		}
		if v, err := (JSON[map[string]float64]{}).Decode(b); err == nil {
			enc, err := JSON[map[string]float64]{}.Encode(v)
			if err != nil {
				t.Fatalf("json codec: %q decoded to %v, which does not encode: %v", b, v, err)
			}
			if again, err := (JSON[map[string]float64]{}).Decode(enc); err != nil || !reflect.DeepEqual(again, v) {
				t.Fatalf("json codec: %q -> %v -> %q -> %v, %v", b, v, enc, again, err)
			}
		}
	})
}

// TestRawJSON: RawJSON stores valid JSON text as it is and refuses the rest.
func TestRawJSON(t *testing.T) {
	b, err := RawJSON{}.Encode(`{"a": [1, 2]}`)
	if err != nil || string(b) != `{"a": [1, 2]}` {
		t.Errorf("encode = %q, %v", b, err)
	}
	if s, err := (RawJSON{}).Decode(b); err != nil || s != `{"a": [1, 2]}` {
		t.Errorf("decode = %q, %v", s, err)
	}
	if _, err := (RawJSON{}).Encode("{"); err == nil {
		t.Error("invalid JSON encoded")
	}
}

// TestIsJSON: JSON and RawJSON say their bytes are JSON; no other codec does.
func TestIsJSON(t *testing.T) {
	for _, c := range []struct {
		codec any
		want  bool
	}{
		{JSON[int64]{}, true}, {RawJSON{}, true}, {String{}, false}, {Int64{}, false}, {Float64{}, false}, {nil, false},
	} {
		if got := IsJSON(c.codec); got != c.want {
			t.Errorf("IsJSON(%T) = %v, want %v", c.codec, got, c.want)
		}
	}
}

// TestJSONInt64MatchesEncodingJSON: JSON encodes an int64 as encoding/json
// does, and its int64 shortcut decodes every input to the same value and
// the same success or failure.
func TestJSONInt64MatchesEncodingJSON(t *testing.T) {
	var c JSON[int64]
	for _, v := range []int64{0, 1, -1, 42, -9000, math.MaxInt64, math.MinInt64} {
		got, err := c.Encode(v)
		want, _ := json.Marshal(v)
		if err != nil || string(got) != string(want) {
			t.Errorf("Encode(%d) = %q, %v; want %q", v, got, err, want)
		}
	}
	for _, in := range []string{"0", "7", "-7", "123456789", "9223372036854775807", "-9223372036854775808",
		"9223372036854775808", "-9223372036854775809", "007", "-0", "-", "", "+5", " 5", "5 ", "1e3", "1.0",
		"0x10", "1_000", "null", `"5"`, "--5", "5-"} {
		got, gotErr := c.Decode([]byte(in))
		var want int64
		wantErr := json.Unmarshal([]byte(in), &want)
		if got != want || (gotErr == nil) != (wantErr == nil) {
			t.Errorf("Decode(%q) = %d, %v; encoding/json gives %d, %v", in, got, gotErr, want, wantErr)
		}
	}
}

// TestJSONInt64Allocs: decoding a count table's value allocates a few
// bytes (the int64 itself), under a quarter of what encoding/json
// allocates (about 150 bytes).
func TestJSONInt64Allocs(t *testing.T) {
	var c JSON[int64]
	b := []byte("1234567")
	var v int64
	for _, tc := range []struct {
		name     string
		ours, js func()
	}{
		{"Decode", func() { _, _ = c.Decode(b) }, func() { _ = json.Unmarshal(b, &v) }},
	} {
		ours, js := bytesPerRun(tc.ours), bytesPerRun(tc.js)
		if 4*ours >= js {
			t.Errorf("%s allocates %d bytes, want under a quarter of encoding/json's %d", tc.name, ours, js)
		}
	}
}

// bytesPerRun returns the bytes f allocates per call, on average.
func bytesPerRun(f func()) uint64 {
	const runs = 1000
	f() // warm up
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / runs
}

// BenchmarkJSONInt64Encode: a count table's value written by the JSON
// codec, against encoding/json.
func BenchmarkJSONInt64Encode(b *testing.B) {
	var c JSON[int64]
	b.Run("codec", func(b *testing.B) {
		b.ReportAllocs()
		for i := range b.N {
			if _, err := c.Encode(int64(i)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for i := range b.N {
			if _, err := json.Marshal(int64(i)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
