package window

import (
	"fmt"
	"strings"
)

// TimeKind says where a windowed table takes an event's time from.
type TimeKind string

// Where event times come from (Faust's relative_to_stream, relative_to_field
// and relative_to_now).
const (
	// TimeStream is the time the source stream stored the message
	// (manager.Event.Time). The default.
	TimeStream TimeKind = "stream"
	// TimeField is a field of the JSON payload (TimeSource.Name, a dot
	// path): an RFC 3339 string or a number of seconds since the Unix epoch
	// (fractions allowed), from 1970 to 2200.
	TimeField TimeKind = "json"
	// TimeHeader is a message header (TimeSource.Name), in the same forms.
	TimeHeader TimeKind = "header"
	// TimeNow is the table's clock when the event is processed.
	TimeNow TimeKind = "now"
)

// TimeSource says where a windowed table takes an event's time from. The
// zero value is TimeStream.
type TimeSource struct {
	Kind TimeKind
	// Name is the JSON dot path for TimeField, the header for TimeHeader.
	Name string
}

// String returns the source as the CLI writes it: stream, now, json:FIELD or
// header:NAME.
func (s TimeSource) String() string {
	switch s.Kind {
	case "", TimeStream:
		return string(TimeStream)
	case TimeNow:
		return string(TimeNow)
	}
	return string(s.Kind) + ":" + s.Name
}

// ParseTimeSource parses the CLI form of a time source: stream, now,
// json:FIELD or header:NAME.
func ParseTimeSource(v string) (TimeSource, error) {
	switch v {
	case string(TimeStream):
		return TimeSource{Kind: TimeStream}, nil
	case string(TimeNow):
		return TimeSource{Kind: TimeNow}, nil
	}
	kind, name, ok := strings.Cut(v, ":")
	s := TimeSource{Kind: TimeKind(kind), Name: name}
	if !ok || (s.Kind != TimeField && s.Kind != TimeHeader) {
		return TimeSource{}, fmt.Errorf("time %q: want stream, now, json:FIELD or header:NAME", v)
	}
	return s, s.Validate()
}

// Validate checks s as adding its table would: a known kind, with a name
// for TimeField (a dot path without empty segments) and TimeHeader, without
// one for the others.
func (s TimeSource) Validate() error {
	switch s.Kind {
	case "", TimeStream, TimeNow:
		if s.Name != "" {
			return fmt.Errorf("time source %s takes no name", s.Kind)
		}
	case TimeField:
		for _, seg := range strings.Split(s.Name, ".") {
			if seg == "" {
				return fmt.Errorf("time field %q has an empty segment", s.Name)
			}
		}
	case TimeHeader:
		if s.Name == "" {
			return fmt.Errorf("time header: no header name")
		}
	default:
		return fmt.Errorf("time source kind %q: want stream, json, header or now", s.Kind)
	}
	return nil
}
