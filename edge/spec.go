package edge

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Aggregations a built-in table can compute.
const (
	AggCount  = "count"
	AggSum    = "sum"
	AggMin    = "min"
	AggMax    = "max"
	AggAvg    = "avg"
	AggLatest = "latest"
)

var aggs = []string{AggCount, AggSum, AggMin, AggMax, AggAvg, AggLatest}

// ErrSpec is wrapped by every error of ParseTableSpec.
var ErrSpec = errors.New("invalid table spec")

// TableSpec declares a built-in table, as given to `edgetables run --table`:
//
//	name=NAME,source=SUBJECT,key=KEYSPEC,agg=AGG[,field=FIELD]
type TableSpec struct {
	// Name is the table's name.
	Name string
	// Source is the NATS subject (wildcards allowed) of the events.
	Source string
	// Key picks the event's key: the N-th subject token or a JSON field.
	Key KeySpec
	// Agg is one of count, sum, min, max, avg, latest.
	Agg string
	// Field is the JSON field (dot path) holding the number for sum, min,
	// max and avg.
	Field string
	raw   string
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
	return out
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
		default:
			return s, fmt.Errorf("%w %q: unknown part %q (want name, source, key, agg, field)", ErrSpec, v, k)
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
	default:
		if s.Field != "" {
			return fmt.Errorf("agg %s takes no field", s.Agg)
		}
	}
	if err := validPath(s.Field); s.Field != "" && err != nil {
		return fmt.Errorf("field: %w", err)
	}
	toks := strings.Split(s.Source, ".")
	for i, t := range toks {
		if t == "" || (t == ">" && i != len(toks)-1) || strings.ContainsAny(t, " \t") || (len(t) > 1 && strings.ContainsAny(t, "*>")) {
			return fmt.Errorf("source %q is not a valid NATS subject", s.Source)
		}
	}
	if s.Key.Token > len(toks) && toks[len(toks)-1] != ">" {
		return fmt.Errorf("key subject:%d: source %q has only %d tokens", s.Key.Token, s.Source, len(toks))
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
