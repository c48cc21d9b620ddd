package manager

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"testing"
	"time"
)

// FuzzCodecs decodes any bytes with every codec of this package: a decode
// never panics, and what decodes encodes back to the same bytes (for JSON,
// to a document that decodes to the same value).
func FuzzCodecs(f *testing.F) {
	i, _ := Int64Codec{}.Encode(-42)
	fl, _ := Float64Codec{}.Encode(math.Inf(-1))
	for _, b := range [][]byte{{}, i, fl, []byte(`{"a":[1,2.5,"x",null,true]}`), []byte(`"\ud800"`), []byte("1e400"), {0xff, 0xfe}} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if s, err := (StringCodec{}).Decode(b); err != nil || !bytes.Equal([]byte(s), b) {
			t.Fatalf("string codec: %q -> %q, %v", b, s, err)
		}
		if v, err := (Int64Codec{}).Decode(b); err == nil {
			if got, _ := (Int64Codec{}).Encode(v); !bytes.Equal(got, b) {
				t.Fatalf("int64 codec: %x -> %d -> %x", b, v, got)
			}
			if p, err := (Int64Codec{}).ParseText(Int64Codec{}.FormatText(v)); err != nil || p != v {
				t.Fatalf("int64 text: %d -> %d, %v", v, p, err)
			}
		} else if len(b) == 8 {
			t.Fatalf("int64 codec refused 8 bytes: %v", err)
		}
		if v, err := (Float64Codec{}).Decode(b); err == nil {
			if got, _ := (Float64Codec{}).Encode(v); !bytes.Equal(got, b) {
				t.Fatalf("float64 codec: %x -> %v -> %x", b, v, got)
			}
		}
		if v, err := (JSONCodec[any]{}).Decode(b); err == nil {
			enc, err := JSONCodec[any]{}.Encode(v)
			if err != nil {
				t.Fatalf("json codec: %q decoded to %v, which does not encode: %v", b, v, err)
			}
			again, err := JSONCodec[any]{}.Decode(enc)
			if err != nil || !reflect.DeepEqual(again, v) {
				t.Fatalf("json codec: %q -> %v -> %q -> %v, %v", b, v, enc, again, err)
			}
		}
		if v, err := (JSONCodec[map[string]float64]{}).Decode(b); err == nil {
			enc, err := JSONCodec[map[string]float64]{}.Encode(v)
			if err != nil {
				t.Fatalf("json codec: %q decoded to %v, which does not encode: %v", b, v, err)
			}
			if again, err := (JSONCodec[map[string]float64]{}).Decode(enc); err != nil || !reflect.DeepEqual(again, v) {
				t.Fatalf("json codec: %q -> %v -> %q -> %v, %v", b, v, enc, again, err)
			}
		}
	})
}

// FuzzSetAndWindowKeys decodes any bytes as a set value and as a window
// store key: what decodes encodes back to the same bytes.
func FuzzSetAndWindowKeys(f *testing.F) {
	f.Add([]byte{})
	f.Add(encodeSet([][]byte{[]byte("a"), []byte("bc"), {}}))
	f.Add(windowKey([]byte("k"), time.Unix(60, 0)))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		if set, err := decodeSet(b); err == nil {
			if got := encodeSet(set); !bytes.Equal(got, b) {
				// A non-minimal varint length decodes too: the
				// encoding is then shorter, and decodes alike.
				again, err := decodeSet(got)
				if err != nil || !reflect.DeepEqual(normalize(again), normalize(set)) {
					t.Fatalf("set: %x -> %q -> %x -> %q, %v", b, set, got, again, err)
				}
			}
		}
		key, start, ok := splitWindowKey(b)
		if ok != (len(b) >= windowKeyLen) {
			t.Fatalf("window key of %d bytes: ok %v", len(b), ok)
		}
		if ok {
			if got := windowKey(key, time.Unix(0, start)); !bytes.Equal(got, b) {
				t.Fatalf("window key: %x -> %q@%d -> %x", b, key, start, got)
			}
		}
	})
}

func normalize(set [][]byte) []string {
	out := make([]string, len(set))
	for i, m := range set {
		out[i] = string(m)
	}
	return out
}

// FuzzEventTime reads an event's time from any JSON payload and header with
// json:FIELD and header:NAME sources: errors wrap ErrBadEvent, and an
// accepted time lies in the range windowed tables accept.
func FuzzEventTime(f *testing.F) {
	f.Add("json:ts", []byte(`{"ts":"2026-01-01T00:00:00Z"}`), "")
	f.Add("json:a.b", []byte(`{"a":{"b":1767225600.25}}`), "")
	f.Add("json:ts", []byte(`{"ts":[1]}`), "")
	f.Add("header:Ts", []byte(`{}`), "2026-01-01T00:00:00+02:00")
	f.Add("header:Ts", []byte(``), "1e400")
	f.Add("json:ts", []byte(`{"ts":-0.5}`), "")
	f.Fuzz(func(t *testing.T, source string, data []byte, header string) {
		src, err := ParseTimeSource(source)
		if err != nil || src.Kind == TimeNow || src.Kind == TimeStream {
			return
		}
		e := &Event{Data: data, Header: map[string][]string{src.Name: {header}}}
		ts, err := src.eventTime(e, time.Now())
		if err != nil {
			if !errors.Is(err, ErrBadEvent) {
				t.Fatalf("%s of %q / %q: %v does not wrap ErrBadEvent", source, data, header, err)
			}
			return
		}
		if checkEventTime(ts) != nil {
			t.Fatalf("%s of %q / %q: accepted %s", source, data, header, ts)
		}
		if src.Kind == TimeField {
			var doc map[string]any
			if json.Unmarshal(data, &doc) != nil {
				t.Fatalf("%s: a time from a payload that is not a JSON object: %q", source, data)
			}
		}
	})
}
