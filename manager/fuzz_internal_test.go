package manager

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/edgetables/edgetables/manager/window"
)

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
		src, err := window.ParseTimeSource(source)
		if err != nil || src.Kind == window.TimeNow || src.Kind == window.TimeStream {
			return
		}
		e := &Event{Data: data, Header: map[string][]string{src.Name: {header}}}
		ts, err := eventTime(src, e, time.Now())
		if err != nil {
			if !errors.Is(err, ErrBadEvent) {
				t.Fatalf("%s of %q / %q: %v does not wrap ErrBadEvent", source, data, header, err)
			}
			return
		}
		if checkEventTime(ts) != nil {
			t.Fatalf("%s of %q / %q: accepted %s", source, data, header, ts)
		}
		if src.Kind == window.TimeField {
			var doc map[string]any
			if json.Unmarshal(data, &doc) != nil {
				t.Fatalf("%s: a time from a payload that is not a JSON object: %q", source, data)
			}
		}
	})
}
