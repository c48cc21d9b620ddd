package manager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"

	"github.com/edgetables/edgetables/manager/codec"
)

// MaxKeySize is the largest key, in encoded bytes, a table accepts.
const MaxKeySize = 1024

var tableNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// ValidateTableName checks a table name: lower-case letters, digits, '_'
// and '-', starting with a letter or digit, at most 64 characters.
func ValidateTableName(name string) error {
	if !tableNameRE.MatchString(name) {
		return fmt.Errorf("table name %q: want lower-case letters, digits, '_' and '-', at most 64", name)
	}
	return nil
}

// Collection is what the manager knows of a table whatever its key and value
// types: its name and how to show its keys and values as text and JSON.
// Tables are made with NewTable; the interface is closed to other types.
type Collection interface {
	// Name returns the table's name.
	Name() string
	// ParseKey turns the text form of a key (as in a URL) into its encoded
	// bytes. It fails for tables whose key codec has no text form.
	ParseKey(s string) ([]byte, error)
	// FormatKey turns encoded key bytes into text.
	FormatKey(b []byte) (string, error)
	// ValueJSON turns encoded value bytes into JSON.
	ValueJSON(b []byte) (json.RawMessage, error)
	// Spec returns what the table was declared with, for listings.
	Spec() map[string]string

	bind(m *TableManager) error
}

// TableConfig declares a table.
type TableConfig[K, V any] struct {
	// Name is the table's name: lower-case letters, digits, '_' and '-',
	// starting with a letter or digit, at most 64 characters.
	Name string
	// Keys encodes keys. Required. codec.String is the usual choice.
	Keys codec.Codec[K]
	// Values encodes values. Required.
	Values codec.Codec[V]
	// Default returns the value Get returns for a missing key. It is not
	// stored. Nil means the zero value.
	Default func() V
	// Spec is free-form description shown by listings (the HTTP API shows
	// it under "spec").
	Spec map[string]string
}

// Table is a partitioned key/value table. Writes happen inside an agent, in
// the partition of the event being processed; they are buffered, coalesced
// per key and committed with the event's source position. Reads inside an
// agent see the agent's own uncommitted writes; Lookup outside agents sees
// committed state only.
type Table[K, V any] struct {
	cfg TableConfig[K, V]
	m   *TableManager
}

// NewTable returns a table to Add to a TableManager.
func NewTable[K, V any](cfg TableConfig[K, V]) *Table[K, V] {
	return &Table[K, V]{cfg: cfg}
}

// Name returns the table's name.
func (t *Table[K, V]) Name() string { return t.cfg.Name }

// Spec implements Collection.
func (t *Table[K, V]) Spec() map[string]string { return t.cfg.Spec }

func (t *Table[K, V]) bind(m *TableManager) error {
	if err := ValidateTableName(t.cfg.Name); err != nil {
		return err
	}
	if t.cfg.Keys == nil || t.cfg.Values == nil {
		return fmt.Errorf("table %q: Keys and Values codecs are required", t.cfg.Name)
	}
	if heldBy(t.m, m) {
		return fmt.Errorf("table %q: already added to another manager", t.cfg.Name)
	}
	t.m = m
	return nil
}

func (t *Table[K, V]) encodeKey(k K) ([]byte, error) {
	return keyCodec[K]{t.cfg.Name, t.cfg.Keys}.encode(k)
}

func (t *Table[K, V]) decodeValue(b []byte) (V, error) {
	v, err := t.cfg.Values.Decode(b)
	if err != nil {
		return v, fmt.Errorf("table %s: decode value: %w: %w", t.cfg.Name, ErrStoredValue, err)
	}
	return v, nil
}

func (t *Table[K, V]) missing() V {
	if t.cfg.Default != nil {
		return t.cfg.Default()
	}
	var zero V
	return zero
}

// Get returns the value of k as the agent processing e sees it: its own
// uncommitted writes first, then the committed state. A missing key gives
// the table's default.
func (t *Table[K, V]) Get(e *Event, k K) (V, error) {
	v, _, err := t.Find(e, k)
	return v, err
}

// Find is Get that also says whether the key exists.
func (t *Table[K, V]) Find(e *Event, k K) (V, bool, error) {
	kb, err := t.encodeKey(k)
	if err != nil {
		return t.missing(), false, err
	}
	b, found, err := e.get(t.cfg.Name, kb)
	if err != nil || !found {
		return t.missing(), false, err
	}
	v, err := t.decodeValue(b)
	return v, err == nil, err
}

// Set writes v under k in the partition of e. The key must belong to that
// partition (ErrWrongPartition otherwise): tables are co-partitioned with
// the agent's source key.
func (t *Table[K, V]) Set(e *Event, k K, v V) error {
	kb, err := t.encodeKey(k)
	if err != nil {
		return err
	}
	vb, err := t.cfg.Values.Encode(v)
	if err != nil {
		return fmt.Errorf("table %s: encode value: %w", t.cfg.Name, err)
	}
	return e.put(t.cfg.Name, kb, vb, false)
}

// Delete removes k from the partition of e (a tombstone in the changelog).
func (t *Table[K, V]) Delete(e *Event, k K) error {
	kb, err := t.encodeKey(k)
	if err != nil {
		return err
	}
	return e.put(t.cfg.Name, kb, nil, true)
}

// Lookup returns the committed value of k from this node's local store. It
// fails with ErrNotOwner when k's partition is not assigned here and with
// ErrNotReady while it recovers; found is false for a missing key.
func (t *Table[K, V]) Lookup(ctx context.Context, k K) (v V, found bool, err error) {
	if t.m == nil {
		return v, false, fmt.Errorf("table %s: not added to a manager", t.cfg.Name)
	}
	kb, err := t.encodeKey(k)
	if err != nil {
		return v, false, err
	}
	b, _, err := t.m.Get(ctx, t.cfg.Name, kb)
	if errors.Is(err, ErrKeyNotFound) {
		return t.missing(), false, nil
	}
	if err != nil {
		return v, false, err
	}
	v, err = t.decodeValue(b)
	return v, err == nil, err
}

// ParseKey implements Collection.
func (t *Table[K, V]) ParseKey(s string) ([]byte, error) {
	return keyCodec[K]{t.cfg.Name, t.cfg.Keys}.parse(s)
}

// FormatKey implements Collection.
func (t *Table[K, V]) FormatKey(b []byte) (string, error) {
	return keyCodec[K]{t.cfg.Name, t.cfg.Keys}.format(b)
}

// ValueJSON implements Collection.
func (t *Table[K, V]) ValueJSON(b []byte) (json.RawMessage, error) {
	return valueJSON(t.cfg.Values, b, t.decodeValue)
}
