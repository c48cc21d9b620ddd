package store

import (
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Memory is a Store held in memory, for tests of the code above the store.
// It behaves like Bolt (the same results, errors for empty table names and
// after Close) but keeps nothing across processes. Reads take a read lock,
// Apply a write lock.
type Memory struct {
	mu      sync.RWMutex
	tables  map[string]map[string][]byte
	offsets Offsets
	closed  bool
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty, open Memory.
func NewMemory() *Memory {
	return &Memory{tables: make(map[string]map[string][]byte)}
}

// Get returns a copy of the value of key in table. Cost: two map lookups
// and a copy.
func (m *Memory) Get(table string, key []byte) ([]byte, bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, false, ErrClosed
	}
	v, ok := m.tables[table][string(key)]
	if !ok {
		return nil, false, nil
	}
	return append([]byte{}, v...), true, nil
}

// Scan calls fn in key order for the entries of table that start with prefix
// and are greater than after (nil: from the start; a non-nil empty after
// skips the empty key). It collects and sorts the matching keys under the
// read lock, then calls fn without holding it, so fn sees the state of the
// moment Scan began and may call the store's methods. Cost: a pass over the
// whole table and a sort of the matches, for every call. fn must not modify
// the slices.
func (m *Memory) Scan(table string, prefix, after []byte, fn func(key, value []byte) bool) error {
	type entry struct {
		key   string
		value []byte
	}
	m.mu.RLock()
	if m.closed {
		m.mu.RUnlock()
		return ErrClosed
	}
	var es []entry
	pre := string(prefix)
	for k, v := range m.tables[table] {
		if strings.HasPrefix(k, pre) && (after == nil || k > string(after)) {
			es = append(es, entry{k, v})
		}
	}
	m.mu.RUnlock()
	slices.SortFunc(es, func(x, y entry) int { return strings.Compare(x.key, y.key) })
	for _, e := range es {
		if !fn(append([]byte{}, e.key...), e.value) {
			break
		}
	}
	return nil
}

// Count returns the number of keys in table. Cost: a map lookup.
func (m *Memory) Count(table string) (int, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return 0, ErrClosed
	}
	return len(m.tables[table]), nil
}

// Offsets returns the offsets written by the last Apply.
func (m *Memory) Offsets() (Offsets, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return Offsets{}, ErrClosed
	}
	return m.offsets, nil
}

// Apply writes copies of the batch's mutations, in slice order, and its
// offsets under the write lock. Every mutation must name a table; if one
// does not, nothing is written.
func (m *Memory) Apply(b Batch) error {
	for _, mu := range b.Mutations {
		if mu.Table == "" {
			return errEmptyTable
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	for _, mu := range b.Mutations {
		t := m.tables[mu.Table]
		if mu.Delete {
			delete(t, string(mu.Key))
			continue
		}
		if t == nil {
			t = make(map[string][]byte)
			m.tables[mu.Table] = t
		}
		t[string(mu.Key)] = append([]byte{}, mu.Value...)
	}
	m.offsets = b.Offsets
	return nil
}

// Close marks the store closed; the data stays for a MemoryProvider to open
// again. It is idempotent.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}

// MemoryProvider is a Provider of Memory stores. Open returns the same
// Memory for a partition again, with its data, until Destroy, so that tests
// can restart a node. Like Dir it refuses to open a store that is still open
// (ErrLocked); unlike Dir it also refuses to destroy one.
type MemoryProvider struct {
	mu     sync.Mutex
	stores map[int]*Memory
}

var _ Provider = (*MemoryProvider)(nil)

// NewMemoryProvider returns a MemoryProvider without stores.
func NewMemoryProvider() *MemoryProvider {
	return &MemoryProvider{stores: make(map[int]*Memory)}
}

// Open returns partition p's Memory, reopened if it was closed, or a new
// one. It returns an error wrapping ErrLocked if the Memory is still open.
func (mp *MemoryProvider) Open(p int) (Store, error) {
	mp.mu.Lock()
	defer mp.mu.Unlock()
	m := mp.stores[p]
	if m == nil {
		m = NewMemory()
		mp.stores[p] = m
		return m, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.closed {
		return nil, fmt.Errorf("%w: memory partition %d is open", ErrLocked, p)
	}
	m.closed = false
	return m, nil
}

// Destroy forgets partition p's Memory; the next Open returns an empty one.
// It fails if the Memory is open.
func (mp *MemoryProvider) Destroy(p int) error {
	mp.mu.Lock()
	defer mp.mu.Unlock()
	if m := mp.stores[p]; m != nil {
		m.mu.RLock()
		defer m.mu.RUnlock()
		if !m.closed {
			return fmt.Errorf("store: destroy memory partition %d: store is open", p)
		}
	}
	delete(mp.stores, p)
	return nil
}
