package manager

import (
	"bytes"
	"context"
	"fmt"
	"sort"

	"github.com/edgetables/edgetables/manager/status"
	"github.com/edgetables/edgetables/store"
)

// KeyValue is one entry of a table.
type KeyValue struct {
	Key       []byte
	Value     []byte
	Partition int
}

// Get returns the committed value of key (encoded) in table from this
// node's local store, and its partition. Errors: ErrTableNotFound,
// ErrNotOwner (the partition is not assigned here), ErrNotReady (it is
// recovering), ErrKeyNotFound.
func (m *TableManager) Get(ctx context.Context, table string, key []byte) ([]byte, int, error) {
	if _, ok := m.tables[table]; !ok {
		return nil, 0, fmt.Errorf("%w: %s", ErrTableNotFound, table)
	}
	id := PartitionOf(key, m.cfg.Partitions)
	if m.IsGlobal(table) {
		v, found, _, err := m.global.get(table, key)
		if err == nil && !found {
			err = fmt.Errorf("%w: table %s", ErrKeyNotFound, table)
		}
		return v, id, err
	}
	p, err := m.readable(id)
	if err != nil {
		return nil, id, err
	}
	v, found, err := p.store.Get(table, key)
	if err != nil {
		return nil, id, fmt.Errorf("table %s partition %d: %w", table, id, err)
	}
	if !found {
		return nil, id, fmt.Errorf("%w: table %s", ErrKeyNotFound, table)
	}
	return v, id, nil
}

func (m *TableManager) readable(id int) (*partition, error) {
	p := m.partition(id)
	if p == nil || p.State() == status.StateFenced {
		return nil, fmt.Errorf("partition %d: %w", id, ErrNotOwner)
	}
	if p.State() != status.StateActive {
		return nil, fmt.Errorf("partition %d: %w", id, ErrNotReady)
	}
	return p, nil
}

// Scan returns up to limit committed entries of table whose key starts with
// prefix and is greater than after, in key order, gathered from every
// partition assigned to this node. It fails with ErrNotReady while any of
// them recovers.
func (m *TableManager) Scan(ctx context.Context, table string, prefix, after []byte, limit int) ([]KeyValue, error) {
	if _, ok := m.tables[table]; !ok {
		return nil, fmt.Errorf("%w: %s", ErrTableNotFound, table)
	}
	if limit <= 0 {
		return nil, nil
	}
	if m.IsGlobal(table) {
		return m.scanGlobal(ctx, table, prefix, after, limit)
	}
	hidden, _ := m.tables[table].(hiddenKeys)
	var out []KeyValue
	for _, p := range m.assigned() {
		switch p.State() {
		case status.StateFenced, status.StateStandby:
			continue
		case status.StateRecovering:
			return nil, fmt.Errorf("partition %d: %w", p.id, ErrNotReady)
		}
		n := 0
		err := p.store.Scan(table, prefix, after, func(k, v []byte) bool {
			if hidden != nil && hidden.hiddenKey(k) {
				return true
			}
			out = append(out, KeyValue{Key: bytes.Clone(k), Value: bytes.Clone(v), Partition: p.id})
			n++
			return n < limit
		})
		if err != nil {
			return nil, fmt.Errorf("table %s partition %d: %w", table, p.id, err)
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i].Key, out[j].Key) < 0 })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// Count returns the number of committed keys of table in the partitions
// active on this node (for a windowed table: its windows; for a global
// table: all its keys).
func (m *TableManager) Count(table string) (int, error) {
	if _, ok := m.tables[table]; !ok {
		return 0, fmt.Errorf("%w: %s", ErrTableNotFound, table)
	}
	if m.IsGlobal(table) {
		n := 0
		err := m.global.read(func(st store.Store) (err error) {
			n, err = st.Count(table)
			return err
		})
		if err != nil {
			return 0, fmt.Errorf("table %s: %w", table, err)
		}
		return n, nil
	}
	n := 0
	for _, p := range m.assigned() {
		if p.State() != status.StateActive {
			continue
		}
		c, err := p.store.Count(table)
		if err != nil {
			return 0, fmt.Errorf("table %s partition %d: %w", table, p.id, err)
		}
		h, err := hiddenCount(m.tables[table], p.store)
		if err != nil {
			return 0, fmt.Errorf("table %s partition %d: %w", table, p.id, err)
		}
		n += c - h
	}
	return n, nil
}

// TableList describes every table, in name order, without counting keys
// (Keys is 0): it reads no store (Count counts a table's keys here; the HTTP
// API counts them over the cluster).
func (m *TableManager) TableList() []status.TableInfo {
	var out []status.TableInfo
	for _, t := range m.Tables() {
		out = append(out, status.TableInfo{Name: t.Name(), Spec: t.Spec(), Partitions: m.cfg.Partitions, Changelog: m.subjects(t.Name()), Global: m.IsGlobal(t.Name())})
	}
	return out
}

// scanGlobal is Scan of a global table: this node's copy holds all of it.
func (m *TableManager) scanGlobal(ctx context.Context, table string, prefix, after []byte, limit int) ([]KeyValue, error) {
	var out []KeyValue
	err := m.global.read(func(st store.Store) error {
		return st.Scan(table, prefix, after, func(k, v []byte) bool {
			out = append(out, KeyValue{Key: bytes.Clone(k), Value: bytes.Clone(v), Partition: PartitionOf(k, m.cfg.Partitions)})
			return len(out) < limit && ctx.Err() == nil
		})
	})
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return nil, fmt.Errorf("table %s: %w", table, err)
	}
	return out, nil
}
