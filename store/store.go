// Package store keeps the local state of table partitions: one Store per
// partition, holding the data of every table in that partition together with
// the offsets that say how far the data has come. Data and offsets are always
// written in one transaction, so a store never claims to have applied a
// changelog record it does not hold.
//
// Two implementations share the Store interface: Bolt, a bbolt file per
// partition (the production store), and Memory (for unit tests of table
// logic).
package store

// Offsets record how far a partition's store has come.
type Offsets struct {
	// Changelog is the sequence of the last changelog record applied to the
	// store (0: none).
	Changelog uint64
	// Source is the sequence of the last source message whose effects the
	// store holds (0: none).
	Source uint64
	// Epoch identifies the changelog the offsets refer to (for JetStream, the
	// stream's creation time). A changelog with another epoch was recreated,
	// and the offsets mean nothing for it.
	Epoch string
	// SourceEpoch identifies the source stream Source counts in (for
	// JetStream, the source stream's creation time); "" when unknown
	// (stores written before it existed).
	SourceEpoch string
}

// Mutation is one change to one key of one table. Table must not be empty;
// Key may be (nil and empty are the same key).
type Mutation struct {
	Table  string
	Key    []byte
	Value  []byte
	Delete bool
}

// Batch is what one transaction writes: mutations and the offsets that
// describe the store after them.
type Batch struct {
	Mutations []Mutation
	Offsets   Offsets
}

// Store is the local state of one partition. Implementations are safe for
// concurrent use: one writer (Apply) and any number of readers.
type Store interface {
	// Get returns the value of key in table; found is false when the key is
	// absent. The returned slice is owned by the caller.
	Get(table string, key []byte) (value []byte, found bool, err error)
	// Scan calls fn for the entries of table whose key starts with prefix
	// and is greater than after (nil: from the start; a non-nil empty after
	// excludes only the empty key), in key order, until fn returns false.
	// The slices passed to fn are valid only during the call and must not be
	// modified.
	Scan(table string, prefix, after []byte, fn func(key, value []byte) bool) error
	// Count returns the number of keys in table.
	Count(table string) (int, error)
	// Offsets returns the offsets stored by the last Apply (zero values for
	// a new store).
	Offsets() (Offsets, error)
	// Apply writes the batch's mutations and offsets in one transaction:
	// after a crash either all of it is there or none. Mutations of the same
	// table and key are applied in slice order. It fails, writing nothing,
	// if a mutation has no table. It keeps none of the batch's slices.
	Apply(b Batch) error
	// Close releases the store. Further calls return ErrClosed.
	Close() error
}

// Provider opens the stores of partitions.
type Provider interface {
	// Open opens (or creates) the store of partition p. It returns an error
	// wrapping ErrCorrupt when the existing store cannot be trusted; the
	// caller then calls Destroy and opens it again.
	Open(p int) (Store, error)
	// Destroy removes the store of partition p, which must be closed.
	Destroy(p int) error
}
