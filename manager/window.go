package manager

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/edgetables/edgetables/manager/window"
)

// windowKeyLen is the size of the window start appended to a key.
const windowKeyLen = 8

// windowKey returns the store key of key's window starting at start: the
// encoded key followed by the start in Unix nanoseconds, big-endian with the
// sign bit flipped, so that a key's windows are adjacent and in time order.
func windowKey(key []byte, start time.Time) []byte {
	b := make([]byte, 0, len(key)+windowKeyLen)
	b = append(b, key...)
	return binary.BigEndian.AppendUint64(b, uint64(start.UnixNano())^(1<<63))
}

// splitWindowKey returns the encoded key and window start of a store key.
func splitWindowKey(sk []byte) (key []byte, start int64, ok bool) {
	if len(sk) < windowKeyLen {
		return nil, 0, false
	}
	n := len(sk) - windowKeyLen
	return sk[:n], int64(binary.BigEndian.Uint64(sk[n:]) ^ (1 << 63)), true
}

// windowAt returns the window of ws starting at start (Unix nanoseconds).
func windowAt(ws window.Windows, start int64) window.Window {
	return window.Window{Start: time.Unix(0, start).UTC(), End: time.Unix(0, start).Add(ws.Size).UTC()}
}

// closeAt returns the instant w closes: its end plus Expires (ws has its
// defaults).
func closeAt(ws window.Windows, w window.Window) time.Time { return w.End.Add(ws.Expires) }

// nanos returns t in Unix nanoseconds, and false when int64 nanoseconds
// cannot hold t (before 1678 or after 2262).
func nanos(t time.Time) (int64, bool) {
	if t.Before(time.Unix(0, math.MinInt64)) || t.After(time.Unix(0, math.MaxInt64)) {
		return 0, false
	}
	return t.UnixNano(), true
}

// eventTime returns e's time according to s; now is the table's clock.
// A time outside 1970 to 2200 is an error wrapping ErrEventTime.
func eventTime(s window.TimeSource, e *Event, now time.Time) (time.Time, error) {
	ts, err := readTime(s, e, now)
	if err != nil {
		return ts, err
	}
	return ts, checkEventTime(ts)
}

// readTime returns e's time according to s, unchecked.
func readTime(s window.TimeSource, e *Event, now time.Time) (time.Time, error) {
	switch s.Kind {
	case window.TimeNow:
		return now, nil
	case window.TimeField:
		doc, err := e.JSON()
		if err != nil {
			return time.Time{}, fmt.Errorf("%w: time: %w", ErrBadEvent, err)
		}
		var cur any = doc
		for _, seg := range strings.Split(s.Name, ".") {
			obj, ok := cur.(map[string]any)
			if !ok {
				return time.Time{}, fmt.Errorf("%w: time field %q: not an object on the way", ErrBadEvent, s.Name)
			}
			if cur, ok = obj[seg]; !ok {
				return time.Time{}, fmt.Errorf("%w: time field %q is missing", ErrBadEvent, s.Name)
			}
		}
		switch v := cur.(type) {
		case string:
			return parseTime(s.Name, v)
		case json.Number:
			return parseTime(s.Name, v.String())
		}
		return time.Time{}, fmt.Errorf("%w: time field %q is neither a string nor a number", ErrBadEvent, s.Name)
	case window.TimeHeader:
		vs := e.Header[s.Name]
		if len(vs) == 0 || vs[0] == "" {
			return time.Time{}, fmt.Errorf("%w: time header %q is missing", ErrBadEvent, s.Name)
		}
		return parseTime(s.Name, vs[0])
	}
	if e.Time.IsZero() {
		return time.Time{}, fmt.Errorf("%w: event has no stream time", ErrBadEvent)
	}
	return e.Time, nil
}
