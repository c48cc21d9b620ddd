package edge

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"

	"github.com/edgetables/edgetables/manager"
)

// Average is the value of an avg table.
type Average struct {
	Count int64   `json:"count"`
	Sum   float64 `json:"sum"`
	Avg   float64 `json:"avg"`
}

// Builtin returns the table and the agent of a built-in table spec. The
// agent is an ordinary manager.Agent: built-in tables use the same agent
// API a Go user does.
func Builtin(s TableSpec) (manager.Collection, manager.Agent, error) {
	if err := s.validate(); err != nil {
		return nil, manager.Agent{}, fmt.Errorf("%w %q: %w", ErrSpec, s, err)
	}
	spec := map[string]string{"source": s.Source, "key": s.Key.String(), "agg": s.Agg}
	if s.Field != "" {
		spec["field"] = s.Field
	}
	agent := manager.Agent{Name: s.Name, Subjects: []string{s.Source}, Key: keyFunc(s.Key)}
	var table manager.Collection
	switch s.Agg {
	case AggCount:
		t := manager.NewTable(manager.TableConfig[string, int64]{
			Name: s.Name, Keys: manager.StringCodec{}, Values: manager.JSONCodec[int64]{}, Spec: spec})
		agent.Process = func(e *manager.Event) error {
			k := string(e.Key)
			n, err := t.Get(e, k)
			if err != nil {
				return err
			}
			return t.Set(e, k, n+1)
		}
		table = t
	case AggSum, AggMin, AggMax:
		t := manager.NewTable(manager.TableConfig[string, float64]{
			Name: s.Name, Keys: manager.StringCodec{}, Values: manager.JSONCodec[float64]{}, Spec: spec})
		fold := map[string]func(a, b float64) float64{
			AggSum: func(a, b float64) float64 { return a + b },
			AggMin: math.Min,
			AggMax: math.Max,
		}[s.Agg]
		agent.Process = func(e *manager.Event) error {
			x, err := numberField(e, s.Field)
			if err != nil {
				return err
			}
			k := string(e.Key)
			cur, found, err := t.Find(e, k)
			if err != nil {
				return err
			}
			if found {
				x = fold(cur, x)
			}
			return t.Set(e, k, x)
		}
		table = t
	case AggAvg:
		t := manager.NewTable(manager.TableConfig[string, Average]{
			Name: s.Name, Keys: manager.StringCodec{}, Values: manager.JSONCodec[Average]{}, Spec: spec})
		agent.Process = func(e *manager.Event) error {
			x, err := numberField(e, s.Field)
			if err != nil {
				return err
			}
			k := string(e.Key)
			a, err := t.Get(e, k)
			if err != nil {
				return err
			}
			a.Count++
			a.Sum += x
			a.Avg = a.Sum / float64(a.Count)
			return t.Set(e, k, a)
		}
		table = t
	case AggLatest:
		t := manager.NewTable(manager.TableConfig[string, json.RawMessage]{
			Name: s.Name, Keys: manager.StringCodec{}, Values: manager.JSONCodec[json.RawMessage]{}, Spec: spec})
		agent.Process = func(e *manager.Event) error {
			if !json.Valid(e.Data) {
				return fmt.Errorf("%w: payload is not JSON", manager.ErrBadEvent)
			}
			return t.Set(e, string(e.Key), json.RawMessage(e.Data))
		}
		table = t
	}
	return table, agent, nil
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
