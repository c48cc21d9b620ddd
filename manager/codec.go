package manager

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
)

// Codec turns values of type T into bytes and back. Tables use one codec for
// keys and one for values; the bytes are what the local store and the
// changelog hold.
type Codec[T any] interface {
	Encode(v T) ([]byte, error)
	Decode(b []byte) (T, error)
}

// TextCodec is implemented by key codecs whose keys can be written as text,
// as in the HTTP API's /v1/tables/{table}/keys/{key}. Tables whose key codec
// does not implement it are reachable only from Go.
type TextCodec[T any] interface {
	Codec[T]
	ParseText(s string) (T, error)
	FormatText(v T) string
}

// StringCodec encodes strings as their bytes. It is the usual key codec: the
// bytes it produces are the bytes a string event key hashes to, so tables
// keyed by it are co-partitioned with agents whose Key returns the same
// string.
type StringCodec struct{}

// Encode implements Codec.
func (StringCodec) Encode(v string) ([]byte, error) { return []byte(v), nil }

// Decode implements Codec.
func (StringCodec) Decode(b []byte) (string, error) { return string(b), nil }

// ParseText implements TextCodec.
func (StringCodec) ParseText(s string) (string, error) { return s, nil }

// FormatText implements TextCodec.
func (StringCodec) FormatText(v string) string { return v }

// Int64Codec encodes int64 values as 8 big-endian bytes with the sign bit
// flipped, so that byte order is numeric order (keys scan in numeric order).
type Int64Codec struct{}

// Encode implements Codec.
func (Int64Codec) Encode(v int64) ([]byte, error) {
	return binary.BigEndian.AppendUint64(nil, uint64(v)^(1<<63)), nil
}

// Decode implements Codec.
func (Int64Codec) Decode(b []byte) (int64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("int64 codec: %d bytes, want 8", len(b))
	}
	return int64(binary.BigEndian.Uint64(b) ^ (1 << 63)), nil
}

// ParseText implements TextCodec (decimal).
func (Int64Codec) ParseText(s string) (int64, error) { return strconv.ParseInt(s, 10, 64) }

// FormatText implements TextCodec.
func (Int64Codec) FormatText(v int64) string { return strconv.FormatInt(v, 10) }

// Float64Codec encodes float64 values as their 8 IEEE-754 bytes, big-endian.
type Float64Codec struct{}

// Encode implements Codec.
func (Float64Codec) Encode(v float64) ([]byte, error) {
	return binary.BigEndian.AppendUint64(nil, math.Float64bits(v)), nil
}

// Decode implements Codec.
func (Float64Codec) Decode(b []byte) (float64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("float64 codec: %d bytes, want 8", len(b))
	}
	return math.Float64frombits(binary.BigEndian.Uint64(b)), nil
}

// JSONCodec encodes values as JSON. Tables whose values are JSON are served
// by the HTTP API without a decode and re-encode.
type JSONCodec[T any] struct{}

// Encode implements Codec.
func (JSONCodec[T]) Encode(v T) ([]byte, error) { return json.Marshal(v) }

// Decode implements Codec.
func (JSONCodec[T]) Decode(b []byte) (T, error) {
	var v T
	err := json.Unmarshal(b, &v)
	return v, err
}

func (JSONCodec[T]) isJSON() {}

// jsonCodec marks codecs whose bytes are JSON already.
type jsonCodec interface{ isJSON() }
