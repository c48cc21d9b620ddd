package manager

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/edgetables/edgetables/manager/codec"
)

// SetTableConfig declares a set table.
type SetTableConfig[K any, M comparable] struct {
	// Name, Keys and Spec are as in TableConfig.
	Name string
	Keys codec.Codec[K]
	Spec map[string]string
	// Members encodes the members of the sets. Required. Two members are
	// the same when their encodings are equal.
	Members codec.Codec[M]
	// MaxMembers caps the members of one set (default 10,000): an Add
	// beyond it fails with ErrSetFull, so the event goes to the dead-letter
	// subject instead of a value growing past what one changelog message
	// holds (the whole set is one message).
	MaxMembers int
}

// SetTable is a table whose values are sets (Faust's SetTable). Add and
// Discard change a key's set inside an agent; like every write, the
// changes to a key within one commit coalesce, and the committed value,
// in the store and the changelog, is the whole set (an empty set is a
// deleted key).
//
// Concurrent adds are not lost: a partition has a single writer, its
// active owner, which applies every event of a key in source order, each
// Add reading the set as the previous events left it (their uncommitted
// writes included) and writing the union. Two events adding different
// members to the same key, in the same commit or not, both end up in the
// set; there is no last-writer-wins between writers because there is only
// one. After a crash or a failover the new owner restores the committed
// sets from the changelog and processes the uncommitted events again;
// adding a member twice is adding it once, so the sets come out the same.
// Only Discard and Add of the same member race, and they resolve in source
// order.
type SetTable[K any, M comparable] struct {
	cfg SetTableConfig[K, M]
	m   *TableManager
}

// NewSetTable returns a set table to Add to a TableManager.
func NewSetTable[K any, M comparable](cfg SetTableConfig[K, M]) *SetTable[K, M] {
	if cfg.MaxMembers == 0 {
		cfg.MaxMembers = 10000
	}
	return &SetTable[K, M]{cfg: cfg}
}

// Name returns the table's name.
func (t *SetTable[K, M]) Name() string { return t.cfg.Name }

// Spec implements Collection.
func (t *SetTable[K, M]) Spec() map[string]string { return t.cfg.Spec }

func (t *SetTable[K, M]) bind(m *TableManager) error {
	if err := ValidateTableName(t.cfg.Name); err != nil {
		return err
	}
	if t.cfg.Keys == nil || t.cfg.Members == nil {
		return fmt.Errorf("table %q: Keys and Members codecs are required", t.cfg.Name)
	}
	if t.cfg.MaxMembers < 0 {
		return fmt.Errorf("table %q: MaxMembers %d is negative", t.cfg.Name, t.cfg.MaxMembers)
	}
	if heldBy(t.m, m) {
		return fmt.Errorf("table %q: already added to another manager", t.cfg.Name)
	}
	t.m = m
	return nil
}

func (t *SetTable[K, M]) encodeKey(k K) ([]byte, error) {
	return keyCodec[K]{t.cfg.Name, t.cfg.Keys}.encode(k)
}

// encodeSet writes members (sorted, distinct) as a sequence of
// length-prefixed encodings.
func encodeSet(members [][]byte) []byte {
	var b []byte
	for _, m := range members {
		b = binary.AppendUvarint(b, uint64(len(m)))
		b = append(b, m...)
	}
	return b
}

// decodeSet reads what encodeSet wrote.
func decodeSet(b []byte) ([][]byte, error) {
	var out [][]byte
	for len(b) > 0 {
		n, w := binary.Uvarint(b)
		if w <= 0 || uint64(len(b)-w) < n {
			return nil, errors.New("set value: truncated member")
		}
		out = append(out, b[w:w+int(n)])
		b = b[w+int(n):]
	}
	return out, nil
}

// encoded returns the encoded members of k as the agent processing e sees
// them, sorted.
func (t *SetTable[K, M]) encoded(e *Event, kb []byte) ([][]byte, error) {
	b, found, err := e.get(t.cfg.Name, kb)
	if err != nil || !found {
		return nil, err
	}
	set, err := decodeSet(b)
	if err != nil {
		return nil, fmt.Errorf("table %s: %w", t.cfg.Name, err)
	}
	return set, nil
}

// change adds or removes ms in k's set and writes the result.
func (t *SetTable[K, M]) change(e *Event, k K, add bool, ms []M) error {
	kb, err := t.encodeKey(k)
	if err != nil {
		return err
	}
	set, err := t.encoded(e, kb)
	if err != nil {
		return err
	}
	changed := false
	for _, m := range ms {
		mb, err := t.cfg.Members.Encode(m)
		if err != nil {
			return fmt.Errorf("table %s: encode member: %w", t.cfg.Name, err)
		}
		i, found := slices.BinarySearchFunc(set, mb, bytes.Compare)
		switch {
		case add && !found:
			if len(set) >= t.cfg.MaxMembers {
				return fmt.Errorf("table %s: key %q: %d members: %w", t.cfg.Name, kb, len(set), ErrSetFull)
			}
			set = slices.Insert(set, i, mb)
			changed = true
		case !add && found:
			set = slices.Delete(set, i, i+1)
			changed = true
		}
	}
	if !changed {
		return nil
	}
	if len(set) == 0 {
		return e.put(t.cfg.Name, kb, nil, true)
	}
	return e.put(t.cfg.Name, kb, encodeSet(set), false)
}

// Add adds ms to k's set in the partition of e.
func (t *SetTable[K, M]) Add(e *Event, k K, ms ...M) error { return t.change(e, k, true, ms) }

// Discard removes ms from k's set in the partition of e; removing the last
// member deletes k.
func (t *SetTable[K, M]) Discard(e *Event, k K, ms ...M) error { return t.change(e, k, false, ms) }

// Members returns k's set as the agent processing e sees it, in the order
// of the members' encodings.
func (t *SetTable[K, M]) Members(e *Event, k K) ([]M, error) {
	kb, err := t.encodeKey(k)
	if err != nil {
		return nil, err
	}
	set, err := t.encoded(e, kb)
	if err != nil {
		return nil, err
	}
	return t.decodeMembers(set)
}

// Contains reports whether m is in k's set as the agent processing e sees
// it.
func (t *SetTable[K, M]) Contains(e *Event, k K, m M) (bool, error) {
	kb, err := t.encodeKey(k)
	if err != nil {
		return false, err
	}
	set, err := t.encoded(e, kb)
	if err != nil {
		return false, err
	}
	mb, err := t.cfg.Members.Encode(m)
	if err != nil {
		return false, fmt.Errorf("table %s: encode member: %w", t.cfg.Name, err)
	}
	_, found := slices.BinarySearchFunc(set, mb, bytes.Compare)
	return found, nil
}

// Lookup returns k's committed set from this node's local store (errors as
// Table.Lookup); found is false for a missing key (an empty set).
func (t *SetTable[K, M]) Lookup(ctx context.Context, k K) ([]M, bool, error) {
	if t.m == nil {
		return nil, false, fmt.Errorf("table %s: not added to a manager", t.cfg.Name)
	}
	kb, err := t.encodeKey(k)
	if err != nil {
		return nil, false, err
	}
	b, _, err := t.m.Get(ctx, t.cfg.Name, kb)
	if errors.Is(err, ErrKeyNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	set, err := decodeSet(b)
	if err != nil {
		return nil, false, fmt.Errorf("table %s: %w", t.cfg.Name, err)
	}
	ms, err := t.decodeMembers(set)
	return ms, err == nil, err
}

func (t *SetTable[K, M]) decodeMembers(set [][]byte) ([]M, error) {
	out := make([]M, 0, len(set))
	for _, mb := range set {
		m, err := t.cfg.Members.Decode(mb)
		if err != nil {
			return nil, fmt.Errorf("table %s: decode member: %w", t.cfg.Name, err)
		}
		out = append(out, m)
	}
	return out, nil
}

// ParseKey implements Collection.
func (t *SetTable[K, M]) ParseKey(s string) ([]byte, error) {
	return keyCodec[K]{t.cfg.Name, t.cfg.Keys}.parse(s)
}

// FormatKey implements Collection.
func (t *SetTable[K, M]) FormatKey(b []byte) (string, error) {
	return keyCodec[K]{t.cfg.Name, t.cfg.Keys}.format(b)
}

// ValueJSON implements Collection: a set is a JSON array of its members.
func (t *SetTable[K, M]) ValueJSON(b []byte) (json.RawMessage, error) {
	set, err := decodeSet(b)
	if err != nil {
		return nil, fmt.Errorf("table %s: %w", t.cfg.Name, err)
	}
	out := make([]json.RawMessage, 0, len(set))
	raw := codec.IsJSON(t.cfg.Members)
	for _, mb := range set {
		if raw && json.Valid(mb) {
			out = append(out, json.RawMessage(mb))
			continue
		}
		m, err := t.cfg.Members.Decode(mb)
		if err != nil {
			return nil, fmt.Errorf("table %s: decode member: %w", t.cfg.Name, err)
		}
		js, err := json.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("table %s: member as JSON: %w", t.cfg.Name, err)
		}
		out = append(out, js)
	}
	return json.Marshal(out)
}
