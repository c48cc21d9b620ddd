// Package codec turns the keys and values of tables into bytes and back.
// A table takes one Codec for its keys and one for its values; the bytes
// they produce are what the local store and the changelog hold, so a
// table's codecs are part of its recorded shape and cannot change under an
// existing table.
package codec

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
)

// Codec turns values of type T into bytes and back.
type Codec[T any] interface {
	Encode(v T) ([]byte, error)
	Decode(b []byte) (T, error)
}

// Text is implemented by key codecs whose keys can be written as text, as
// in the HTTP API's /v1/tables/{table}/keys/{key}. Tables whose key codec
// does not implement it are reachable only from Go.
type Text[T any] interface {
	Codec[T]
	ParseText(s string) (T, error)
	FormatText(v T) string
}

// String encodes strings as their bytes. It is the usual key codec: the
// bytes it produces are the bytes a string event key hashes to, so tables
// keyed by it are co-partitioned with agents whose Key returns the same
// string.
type String struct{}

// Encode implements Codec.
func (String) Encode(v string) ([]byte, error) { return []byte(v), nil }

// Decode implements Codec.
func (String) Decode(b []byte) (string, error) { return string(b), nil }

// ParseText implements Text.
func (String) ParseText(s string) (string, error) { return s, nil }

// FormatText implements Text.
func (String) FormatText(v string) string { return v }

// Int64 encodes int64 values as 8 big-endian bytes with the sign bit
// flipped, so that byte order is numeric order (keys scan in numeric order).
type Int64 struct{}

// Encode implements Codec.
func (Int64) Encode(v int64) ([]byte, error) {
	return binary.BigEndian.AppendUint64(nil, uint64(v)^(1<<63)), nil
}

// Decode implements Codec.
func (Int64) Decode(b []byte) (int64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("int64 codec: %d bytes, want 8", len(b))
	}
	return int64(binary.BigEndian.Uint64(b) ^ (1 << 63)), nil
}

// ParseText implements Text (decimal).
func (Int64) ParseText(s string) (int64, error) { return strconv.ParseInt(s, 10, 64) }

// FormatText implements Text.
func (Int64) FormatText(v int64) string { return strconv.FormatInt(v, 10) }

// Float64 encodes float64 values as their 8 IEEE-754 bytes, big-endian.
type Float64 struct{}

// Encode implements Codec.
func (Float64) Encode(v float64) ([]byte, error) {
	return binary.BigEndian.AppendUint64(nil, math.Float64bits(v)), nil
}

// Decode implements Codec.
func (Float64) Decode(b []byte) (float64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("float64 codec: %d bytes, want 8", len(b))
	}
	return math.Float64frombits(binary.BigEndian.Uint64(b)), nil
}

// JSON encodes values as JSON. Tables whose values are JSON are served by
// the HTTP API without a decode and re-encode.
type JSON[T any] struct{}

// Encode implements Codec. An int64 (a count or sum table's value) is
// written with strconv, which gives encoding/json's bytes without its
// reflection; anything else goes to json.Marshal.
func (JSON[T]) Encode(v T) ([]byte, error) {
	if n, ok := any(v).(int64); ok {
		return strconv.AppendInt(nil, n, 10), nil
	}
	return json.Marshal(v)
}

// Decode implements Codec. An int64 written as a plain JSON integer is read
// without encoding/json; anything else (spaces, exponents, invalid text)
// goes to json.Unmarshal, so the result and errors are the same.
func (JSON[T]) Decode(b []byte) (T, error) {
	var v T
	if _, ok := any(v).(int64); ok {
		if n, ok := plainJSONInt(b); ok {
			return any(n).(T), nil
		}
	}
	err := json.Unmarshal(b, &v)
	return v, err
}

// plainJSONInt parses b if it is a JSON integer that fits an int64,
// without sign other than '-', leading zeros, fraction, exponent or
// spaces: -?(0|[1-9][0-9]*).
func plainJSONInt(b []byte) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 19 || b[0] == '0' && len(b) > 1 {
		return 0, false
	}
	var u uint64 // at most 19 digits: no overflow of a uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		u = u*10 + uint64(c-'0')
	}
	switch {
	case !neg && u <= math.MaxInt64:
		return int64(u), true
	case neg && u <= 1<<63:
		return int64(-u), true // -(1<<63) wraps to MinInt64
	}
	return 0, false
}

func (JSON[T]) isJSON() {}

// RawJSON encodes strings that hold JSON text as their bytes, checking that
// they are valid JSON; tables and sets render them as that JSON.
type RawJSON struct{}

// Encode implements Codec.
func (RawJSON) Encode(v string) ([]byte, error) {
	if !json.Valid([]byte(v)) {
		return nil, fmt.Errorf("raw JSON codec: %q is not JSON", v)
	}
	return []byte(v), nil
}

// Decode implements Codec.
func (RawJSON) Decode(b []byte) (string, error) { return string(b), nil }

func (RawJSON) isJSON() {}

// IsJSON reports whether the bytes c produces are JSON already (c is a
// JSON or a RawJSON), so that they can be served as they are.
func IsJSON(c any) bool {
	_, ok := c.(interface{ isJSON() })
	return ok
}
