package builtin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/edgetables/edgetables/manager"
	"github.com/edgetables/edgetables/manager/codec"
	"github.com/edgetables/edgetables/manager/window"
)

// Average is the value of an avg table.
type Average struct {
	Count int64   `json:"count"`
	Sum   float64 `json:"sum"`
	Avg   float64 `json:"avg"`
}

// maxSetMembers caps the members of a set table's value (and of a
// windowed set's window).
const maxSetMembers = 10000

// Builtin returns the table and the agent of a built-in table spec. The
// agent is an ordinary manager.Agent: built-in tables use the same agent
// API a Go user does. With a window, the table is a manager.WindowedTable
// whose every window folds the events it holds as the plain table would.
func Builtin(s TableSpec) (manager.Collection, manager.Agent, error) {
	if err := s.validate(); err != nil {
		return nil, manager.Agent{}, fmt.Errorf("%w %q: %w", ErrSpec, s, err)
	}
	spec := map[string]string{"source": s.Source, "key": s.Key.String(), "agg": s.Agg}
	if s.Field != "" {
		spec["field"] = s.Field
	}
	if s.Window != 0 {
		ws := s.Windows()
		spec["window"] = ws.Size.String()
		if ws.Hopping() {
			spec["hop"] = ws.Step.String()
		}
		spec["expires"] = s.Expires.String()
		if s.Expires == 0 {
			spec["expires"] = ws.Size.String()
		}
		spec["time"] = s.Time.String()
	}
	agent := manager.Agent{Name: s.Name, Subjects: []string{s.Source}, Key: keyFunc(s.Key)}
	var table manager.Collection
	switch s.Agg {
	case AggCount:
		table = builtinTable(s, spec, &agent, codec.JSON[int64]{}, func(_ *manager.Event, n int64, _ bool) (int64, error) {
			return n + 1, nil
		})
	case AggSum, AggMin, AggMax:
		fold := map[string]func(a, b float64) float64{
			AggSum: func(a, b float64) float64 { return a + b },
			AggMin: math.Min,
			AggMax: math.Max,
		}[s.Agg]
		table = builtinTable(s, spec, &agent, codec.JSON[float64]{}, func(e *manager.Event, cur float64, found bool) (float64, error) {
			x, err := numberField(e, s.Field)
			if err != nil {
				return 0, err
			}
			if found {
				x = fold(cur, x)
			}
			return x, nil
		})
	case AggAvg:
		table = builtinTable(s, spec, &agent, codec.JSON[Average]{}, func(e *manager.Event, a Average, _ bool) (Average, error) {
			x, err := numberField(e, s.Field)
			if err != nil {
				return a, err
			}
			a.Count++
			a.Sum += x
			a.Avg = a.Sum / float64(a.Count)
			return a, nil
		})
	case AggLatest:
		table = builtinTable(s, spec, &agent, codec.JSON[json.RawMessage]{}, func(e *manager.Event, _ json.RawMessage, _ bool) (json.RawMessage, error) {
			if !json.Valid(e.Data) {
				return nil, fmt.Errorf("%w: payload is not JSON", manager.ErrBadEvent)
			}
			return json.RawMessage(e.Data), nil
		})
	case AggSet:
		table = setTable(s, spec, &agent)
	}
	return table, agent, nil
}

// builtinTable returns a table of V values computed by fold from the
// current value of the event's key (found false: none yet) and sets the
// agent's Process: a plain table, or, with a window, a windowed table
// folding each window the event falls in.
func builtinTable[V any](s TableSpec, spec map[string]string, agent *manager.Agent, values codec.Codec[V],
	fold func(e *manager.Event, cur V, found bool) (V, error)) manager.Collection {
	if s.Window == 0 {
		t := manager.NewTable(manager.TableConfig[string, V]{Name: s.Name, Keys: codec.String{}, Values: values, Spec: spec})
		agent.Process = func(e *manager.Event) error {
			k := string(e.Key)
			cur, found, err := t.Find(e, k)
			if err != nil {
				return err
			}
			v, err := fold(e, cur, found)
			if err != nil {
				return err
			}
			return t.Set(e, k, v)
		}
		return t
	}
	t := manager.NewWindowedTable(manager.WindowedTableConfig[string, V]{Name: s.Name, Keys: codec.String{},
		Values: values, Spec: spec, Windows: s.Windows(), Time: s.Time, TombstoneTTL: s.TombstoneTTL, MaxClockSkew: s.MaxClockSkew})
	agent.Process = func(e *manager.Event) error {
		return t.Update(e, string(e.Key), func(_ window.Window, cur V, found bool) (V, error) {
			return fold(e, cur, found)
		})
	}
	return t
}

// setTable returns the table of an agg=set spec: a manager.SetTable of the
// field's distinct JSON values or, with a window, a windowed table whose
// values are sorted JSON arrays of them.
func setTable(s TableSpec, spec map[string]string, agent *manager.Agent) manager.Collection {
	member := func(e *manager.Event) (string, error) {
		v, err := jsonField(e, s.Field)
		if err != nil {
			return "", err
		}
		b, err := json.Marshal(v)
		if err != nil {
			return "", fmt.Errorf("%w: field %q: %w", manager.ErrBadEvent, s.Field, err)
		}
		return string(b), nil
	}
	if s.Window == 0 {
		t := manager.NewSetTable(manager.SetTableConfig[string, string]{Name: s.Name, Keys: codec.String{},
			Members: codec.RawJSON{}, MaxMembers: maxSetMembers, Spec: spec})
		agent.Process = func(e *manager.Event) error {
			m, err := member(e)
			if err != nil {
				return err
			}
			return t.Add(e, string(e.Key), m)
		}
		return t
	}
	return builtinTable(s, spec, agent, codec.JSON[[]json.RawMessage]{},
		func(e *manager.Event, set []json.RawMessage, _ bool) ([]json.RawMessage, error) {
			m, err := member(e)
			if err != nil {
				return nil, err
			}
			i, found := slices.BinarySearchFunc(set, json.RawMessage(m), func(a, b json.RawMessage) int { return bytes.Compare(a, b) })
			if found {
				return set, nil
			}
			if len(set) >= maxSetMembers {
				return nil, fmt.Errorf("table %s key %q: %d members: %w", s.Name, e.Key, len(set), manager.ErrSetFull)
			}
			return slices.Insert(set, i, json.RawMessage(m)), nil
		})
}

// keyFunc returns the agent key function of a key spec.
func keyFunc(k KeySpec) func(e *manager.Event) ([]byte, error) {
	if k.Field == "" {
		n := k.Token
		return func(e *manager.Event) ([]byte, error) {
			tok := e.Token(n)
			if tok == "" {
				return nil, fmt.Errorf("%w: subject %q has no token %d", manager.ErrBadEvent, e.Subject, n)
			}
			if !utf8.ValidString(tok) {
				// Shown as JSON, its invalid bytes would read U+FFFD: a
				// key no one could ask for, like another one.
				return nil, fmt.Errorf("%w: subject %q: token %d is not valid UTF-8", manager.ErrBadEvent, e.Subject, n)
			}
			return []byte(tok), nil
		}
	}
	field := k.Field
	return func(e *manager.Event) ([]byte, error) {
		v, err := jsonField(e, field)
		if err != nil {
			return nil, err
		}
		switch x := v.(type) {
		case string:
			if x == "" {
				// An empty key can be neither read (GET …/keys/) nor paged
				// past (next="" ends a listing).
				return nil, fmt.Errorf("%w: key field %q is empty", manager.ErrBadEvent, field)
			}
			return []byte(x), nil
		case json.Number:
			return []byte(x.String()), nil
		case bool:
			if x {
				return []byte("true"), nil
			}
			return []byte("false"), nil
		}
		return nil, fmt.Errorf("%w: key field %q is %s, want a string, number or boolean", manager.ErrBadEvent, field, kindOf(v))
	}
}

// jsonField returns the value at the dot path in the event's JSON payload.
func jsonField(e *manager.Event, path string) (any, error) {
	doc, err := e.JSON()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", manager.ErrBadEvent, err)
	}
	var cur any = doc
	for _, seg := range strings.Split(path, ".") {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%w: field %q: %s is not an object", manager.ErrBadEvent, path, kindOf(cur))
		}
		if cur, ok = obj[seg]; !ok {
			return nil, fmt.Errorf("%w: field %q is missing", manager.ErrBadEvent, path)
		}
	}
	return cur, nil
}

// numberField returns the number at the dot path in the event's payload.
func numberField(e *manager.Event, path string) (float64, error) {
	v, err := jsonField(e, path)
	if err != nil {
		return 0, err
	}
	n, ok := v.(json.Number)
	if !ok {
		return 0, fmt.Errorf("%w: field %q is %s, not a number", manager.ErrBadEvent, path, kindOf(v))
	}
	f, err := n.Float64()
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, fmt.Errorf("%w: field %q: %s is out of range", manager.ErrBadEvent, path, n)
	}
	return f, nil
}

func kindOf(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}
