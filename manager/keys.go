package manager

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/edgetables/edgetables/manager/codec"
)

// keyCodec encodes, parses and formats the keys of one table; every table
// kind uses it, so that keys are checked and named in errors alike.
type keyCodec[K any] struct {
	table string
	keys  codec.Codec[K]
}

// encode encodes k, refusing keys longer than MaxKeySize.
func (c keyCodec[K]) encode(k K) ([]byte, error) {
	b, err := c.keys.Encode(k)
	if err != nil {
		return nil, fmt.Errorf("table %s: encode key: %w", c.table, err)
	}
	if len(b) > MaxKeySize {
		return nil, fmt.Errorf("table %s: key of %d bytes exceeds %d: %w", c.table, len(b), MaxKeySize, ErrBadEvent)
	}
	return b, nil
}

// parse turns the text form of a key into its encoding.
func (c keyCodec[K]) parse(s string) ([]byte, error) {
	tc, ok := c.keys.(codec.Text[K])
	if !ok {
		return nil, fmt.Errorf("table %s: keys have no text form", c.table)
	}
	k, err := tc.ParseText(s)
	if err != nil {
		return nil, fmt.Errorf("table %s: parse key %q: %w", c.table, s, err)
	}
	return c.encode(k)
}

// format turns an encoded key into its text form.
func (c keyCodec[K]) format(b []byte) (string, error) {
	tc, ok := c.keys.(codec.Text[K])
	if !ok {
		return "", fmt.Errorf("table %s: keys have no text form", c.table)
	}
	k, err := tc.Decode(b)
	if err != nil {
		return "", fmt.Errorf("table %s: decode key: %w", c.table, err)
	}
	return tc.FormatText(k), nil
}

// valueJSON returns a stored value as JSON: as it is when the codec stores
// JSON, else decoded and marshalled.
func valueJSON[V any](values codec.Codec[V], b []byte, decode func([]byte) (V, error)) (json.RawMessage, error) {
	if codec.IsJSON(values) && json.Valid(b) {
		return json.RawMessage(b), nil
	}
	v, err := decode(b)
	if err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// valueFromJSON turns a value given as JSON, in the form valueJSON returns,
// into its encoded bytes.
func valueFromJSON[V any](values codec.Codec[V], raw json.RawMessage) ([]byte, error) {
	if !json.Valid(raw) {
		return nil, fmt.Errorf("%w: not JSON", ErrBadValue)
	}
	if !utf8.Valid(raw) { // json.Valid passes invalid bytes in strings
		return nil, fmt.Errorf("%w: not valid UTF-8, as JSON must be", ErrBadValue)
	}
	var v V
	if _, ok := any(values).(codec.RawJSON); ok {
		if s, ok := any(&v).(*string); ok {
			*s = string(raw) // stored as it is
			return values.Encode(v)
		}
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadValue, err)
	}
	b, err := values.Encode(v)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadValue, err)
	}
	return b, nil
}
