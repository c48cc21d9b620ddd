// Package builtin holds the built-in tables of edgetables: the --table
// spec language (ParseTableSpec, TableSpec), the aggregations a spec names
// (Builtin: count, sum, min, max, avg, latest, set, plain or windowed) and
// the global JSON tables of --global-table (GlobalJSONTable). It is pure
// table logic over package manager: no NATS, no HTTP, no node.
package builtin

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/edgetables/edgetables/manager/subject"
	"github.com/edgetables/edgetables/manager/window"
)

// Aggregations a built-in table can compute.
const (
	AggCount  = "count"
	AggSum    = "sum"
	AggMin    = "min"
	AggMax    = "max"
	AggAvg    = "avg"
	AggLatest = "latest"
	// AggSet keeps the distinct values of a JSON field, as a JSON array.
	AggSet = "set"
)

var aggs = []string{AggCount, AggSum, AggMin, AggMax, AggAvg, AggLatest, AggSet}

// ErrSpec is wrapped by every error of ParseTableSpec.
var ErrSpec = errors.New("invalid table spec")

// TableSpec declares a built-in table, as given to `edgetables run --table`:
//
//	name=NAME,source=SUBJECT,key=KEYSPEC,agg=AGG[,field=FIELD]
//	  [,window=DURATION[,hop=DURATION][,expires=DURATION][,time=json:FIELD|header:NAME|stream|now]
//	  [,tombstone-ttl=DURATION|forever]]
//
// With window the table is windowed (manager.WindowedTable): tumbling
// windows of that size, or hopping ones starting every hop.
type TableSpec struct {
	// Name is the table's name.
	Name string
	// Source is the NATS subject (wildcards allowed) of the events.
	Source string
	// Key picks the event's key: the N-th subject token or a JSON field.
	Key KeySpec
	// Agg is one of count, sum, min, max, avg, latest, set.
	Agg string
	// Field is the JSON field (dot path) holding the number for sum, min,
	// max and avg, and the value for set.
	Field string
	// Window, when not zero, makes the table windowed: windows of this
	// size. Hop is the time between window starts (0: Window, tumbling),
	// Expires how long a window stays open after its end (0: Window), Time
	// where an event's time comes from (default: the stream's time).
	Window  time.Duration
	Hop     time.Duration
	Expires time.Duration
	Time    window.TimeSource
	// TombstoneTTL is how long the changelog keeps a closed window's
	// tombstone: manager.WindowedTableConfig.TombstoneTTL (0: the default,
	// negative, "forever": no TTL of its own, so the node's
	// Config.TombstoneTTL applies, as to other tombstones).
	TombstoneTTL time.Duration
	// MaxClockSkew is manager.WindowedTableConfig.MaxClockSkew (0: the
	// default, an hour; negative: no bound). It is the node's
	// --max-clock-skew, not part of the spec's text: the same spec may run
	// on nodes with different clocks.
	MaxClockSkew time.Duration
	raw          string
}

// KeySpec says where an event's key comes from: the Token-th subject token
// (1-based), or the JSON field Field (dot path).
type KeySpec struct {
	Token int
	Field string
}

// String returns the spec in flag form.
func (k KeySpec) String() string {
	if k.Field != "" {
		return "json:" + k.Field
	}
	return "subject:" + strconv.Itoa(k.Token)
}

// String returns the spec in flag form.
func (s TableSpec) String() string {
	if s.raw != "" {
		return s.raw
	}
	out := fmt.Sprintf("name=%s,source=%s,key=%s,agg=%s", s.Name, s.Source, s.Key, s.Agg)
	if s.Field != "" {
		out += ",field=" + s.Field
	}
	if s.Window != 0 {
		out += ",window=" + s.Window.String()
		if s.Hop != 0 {
			out += ",hop=" + s.Hop.String()
		}
		if s.Expires != 0 {
			out += ",expires=" + s.Expires.String()
		}
		if s.Time.Kind != "" {
			out += ",time=" + s.Time.String()
		}
		switch {
		case s.TombstoneTTL < 0:
			out += ",tombstone-ttl=forever"
		case s.TombstoneTTL > 0:
			out += ",tombstone-ttl=" + s.TombstoneTTL.String()
		}
	}
	return out
}

// Windows returns the spec's windows (meaningful when Window is set).
func (s TableSpec) Windows() window.Windows {
	return window.Windows{Size: s.Window, Step: s.Hop, Expires: s.Expires}
}

// ParseTableSpec parses a --table value. Its errors wrap ErrSpec and name
// the part that is wrong.
func ParseTableSpec(v string) (TableSpec, error) {
	s := TableSpec{raw: v}
	seen := map[string]bool{}
	for _, part := range strings.Split(v, ",") {
		k, val, ok := strings.Cut(part, "=")
		k = strings.TrimSpace(k)
		val = strings.TrimSpace(val)
		if !ok || val == "" {
			return s, fmt.Errorf("%w %q: %q is not key=value", ErrSpec, v, part)
		}
		if seen[k] {
			return s, fmt.Errorf("%w %q: %s given twice", ErrSpec, v, k)
		}
		seen[k] = true
		switch k {
		case "name":
			s.Name = val
		case "source":
			s.Source = val
		case "key":
			ks, err := parseKeySpec(val)
			if err != nil {
				return s, fmt.Errorf("%w %q: key: %w", ErrSpec, v, err)
			}
			s.Key = ks
		case "agg":
			s.Agg = val
		case "field":
			s.Field = val
		case "window", "hop", "expires":
			d, err := time.ParseDuration(val)
			if err != nil || d <= 0 || d > maxWindowPart {
				return s, fmt.Errorf("%w %q: %s %q: want a positive duration such as 30s, 5m or 1h, at most %s (10 years)", ErrSpec, v, k, val, maxWindowPart)
			}
			switch k {
			case "window":
				s.Window = d
			case "hop":
				s.Hop = d
			default:
				s.Expires = d
			}
		case "tombstone-ttl":
			if val == "forever" {
				s.TombstoneTTL = -1
				break
			}
			d, err := time.ParseDuration(val)
			if err != nil || d < time.Second {
				return s, fmt.Errorf("%w %q: tombstone-ttl %q: want forever or a duration of at least 1s, such as 10m or 24h", ErrSpec, v, val)
			}
			s.TombstoneTTL = d
		case "time":
			ts, err := window.ParseTimeSource(val)
			if err != nil {
				return s, fmt.Errorf("%w %q: %w", ErrSpec, v, err)
			}
			s.Time = ts
		default:
			return s, fmt.Errorf("%w %q: unknown part %q (want name, source, key, agg, field, window, hop, expires, time, tombstone-ttl)", ErrSpec, v, k)
		}
	}
	for _, req := range []string{"name", "source", "key", "agg"} {
		if !seen[req] {
			return s, fmt.Errorf("%w %q: %s is missing", ErrSpec, v, req)
		}
	}
	if err := s.validate(); err != nil {
		return s, fmt.Errorf("%w %q: %w", ErrSpec, v, err)
	}
	return s, nil
}

func (s TableSpec) validate() error {
	if !validAgg(s.Agg) {
		return fmt.Errorf("agg %q: want one of %s", s.Agg, strings.Join(aggs, ", "))
	}
	switch s.Agg {
	case AggSum, AggMin, AggMax, AggAvg:
		if s.Field == "" {
			return fmt.Errorf("agg %s needs field=FIELD (the JSON number to aggregate)", s.Agg)
		}
	case AggSet:
		if s.Field == "" {
			return fmt.Errorf("agg set needs field=FIELD (the JSON value whose distinct values it keeps)")
		}
	default:
		if s.Field != "" {
			return fmt.Errorf("agg %s takes no field", s.Agg)
		}
	}
	if err := validPath(s.Field); s.Field != "" && err != nil {
		return fmt.Errorf("field: %w", err)
	}
	if err := s.validateWindow(); err != nil {
		return err
	}
	if err := subject.Valid(s.Source); err != nil {
		return fmt.Errorf("source %q is not a valid NATS subject: %w", s.Source, err)
	}
	toks := strings.Split(s.Source, ".")
	if s.Key.Token > len(toks) && toks[len(toks)-1] != ">" {
		return fmt.Errorf("key subject:%d: source %q has only %d tokens", s.Key.Token, s.Source, len(toks))
	}
	return nil
}

// maxWindowPart bounds window, hop and expires: a window's end plus its
// expiry must stay within the times Go counts in nanoseconds (to 2262).
const maxWindowPart = 10 * 365 * 24 * time.Hour

// validateWindow checks the window parts.
func (s TableSpec) validateWindow() error {
	if s.Window == 0 {
		switch {
		case s.Hop != 0:
			return errors.New("hop needs window=DURATION")
		case s.Expires != 0:
			return errors.New("expires needs window=DURATION")
		case s.Time.Kind != "":
			return errors.New("time needs window=DURATION")
		case s.TombstoneTTL != 0:
			return errors.New("tombstone-ttl needs window=DURATION")
		}
		return nil
	}
	if err := s.Windows().Validate(); err != nil {
		return fmt.Errorf("window=%s,hop=%s: %w", s.Window, s.Hop, err)
	}
	if s.Time.Kind != "" {
		if _, err := window.ParseTimeSource(s.Time.String()); err != nil {
			return err
		}
	}
	return nil
}

func validAgg(a string) bool {
	for _, x := range aggs {
		if a == x {
			return true
		}
	}
	return false
}

func parseKeySpec(v string) (KeySpec, error) {
	kind, arg, ok := strings.Cut(v, ":")
	if !ok {
		return KeySpec{}, fmt.Errorf("%q: want subject:N or json:FIELD", v)
	}
	switch kind {
	case "subject":
		n, err := strconv.Atoi(arg)
		if err != nil || n < 1 {
			return KeySpec{}, fmt.Errorf("%q: N must be a token number from 1", v)
		}
		return KeySpec{Token: n}, nil
	case "json":
		if err := validPath(arg); err != nil {
			return KeySpec{}, fmt.Errorf("%q: %w", v, err)
		}
		return KeySpec{Field: arg}, nil
	}
	return KeySpec{}, fmt.Errorf("%q: want subject:N or json:FIELD", v)
}

func validPath(p string) error {
	for _, seg := range strings.Split(p, ".") {
		if seg == "" {
			return fmt.Errorf("field %q has an empty segment", p)
		}
	}
	return nil
}
