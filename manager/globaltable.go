package manager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/edgetables/edgetables/manager/port"
)

// GlobalTable is a table every node holds whole: Faust's GlobalTable. Its
// records go to one global log (Config.Global), which every node replays
// into a local store at start and then follows, as a standby follows a
// partition; reads are local and never leave the node. Any node may write,
// at any time, from an agent or from anywhere else: writes go straight to
// the global log, not through a partition's commit.
//
// Consistency model:
//   - The global log orders every write of every node. Each node applies
//     it in that order, so every node's copy is a prefix of the same
//     history: nodes converge to the same state, and a node's reads never
//     go back in time. A read may be stale by the node's lag behind the
//     log (usually milliseconds; while a node is cut off from the log's
//     leader, for as long as the cut lasts — it keeps serving reads).
//   - Set and Delete are last-writer-wins in log order. They return once
//     the write is in the log and in this node's copy, so a node reads its
//     own writes.
//   - Update is a compare-and-set on the key: linearizable per key, so
//     concurrent updates from any nodes are never lost.
//   - Sync waits until this node's copy holds everything the log held when
//     Sync was called: Sync then Get is a linearizable read.
//   - Writes are not part of any partition's commit: an agent's event that
//     is processed again after a crash repeats its global writes (harmless
//     for Set; an Update applies twice), whatever the processing guarantee.
//     Each write is one round trip to the log's leader, so global tables
//     suit data written far less often than events arrive: device
//     registries, configuration, thresholds.
//
// Writes need the global log's leader (a quorum of its replicas in a
// cluster); reads need only the local store.
type GlobalTable[K, V any] struct {
	cfg TableConfig[K, V]
	m   *TableManager
}

// NewGlobalTable returns a global table to Add to a TableManager whose
// Config has Global and GlobalStores set.
func NewGlobalTable[K, V any](cfg TableConfig[K, V]) *GlobalTable[K, V] {
	return &GlobalTable[K, V]{cfg: cfg}
}

// Name returns the table's name.
func (t *GlobalTable[K, V]) Name() string { return t.cfg.Name }

// Spec implements Collection.
func (t *GlobalTable[K, V]) Spec() map[string]string { return t.cfg.Spec }

func (t *GlobalTable[K, V]) global() {}

func (t *GlobalTable[K, V]) bind(m *TableManager) error {
	if err := ValidateTableName(t.cfg.Name); err != nil {
		return err
	}
	if t.cfg.Keys == nil || t.cfg.Values == nil {
		return fmt.Errorf("table %q: Keys and Values codecs are required", t.cfg.Name)
	}
	if m.cfg.Global == nil || m.cfg.GlobalStores == nil {
		return fmt.Errorf("global table %q: %w", t.cfg.Name, ErrNoGlobalLog)
	}
	if heldBy(t.m, m) {
		return fmt.Errorf("table %q: already added to another manager", t.cfg.Name)
	}
	t.m = m
	return nil
}

// replica returns the manager's global replica.
func (t *GlobalTable[K, V]) replica() (*globalReplica, error) {
	if t.m == nil || t.m.global == nil {
		return nil, fmt.Errorf("global table %s: not added to a manager", t.cfg.Name)
	}
	return t.m.global, nil
}

func (t *GlobalTable[K, V]) missing() V {
	if t.cfg.Default != nil {
		return t.cfg.Default()
	}
	var zero V
	return zero
}

// find reads k from this node's copy, with the sequence of its last record.
func (t *GlobalTable[K, V]) find(k K) (v V, found bool, seq uint64, err error) {
	g, err := t.replica()
	if err != nil {
		return v, false, 0, err
	}
	kb, err := keyCodec[K]{t.cfg.Name, t.cfg.Keys}.encode(k)
	if err != nil {
		return v, false, 0, err
	}
	b, found, seq, err := g.get(t.cfg.Name, kb)
	if err != nil || !found {
		return t.missing(), false, seq, err
	}
	v, err = t.cfg.Values.Decode(b)
	if err != nil {
		return v, false, seq, fmt.Errorf("global table %s: decode value: %w", t.cfg.Name, err)
	}
	return v, true, seq, nil
}

// Get returns the value of k in this node's copy; a missing key gives the
// table's default. It fails with ErrNotReady until the node's copy has
// caught up with the log after start (agents do not run before that).
func (t *GlobalTable[K, V]) Get(k K) (V, error) {
	v, _, _, err := t.find(k)
	return v, err
}

// Find is Get that also says whether the key exists.
func (t *GlobalTable[K, V]) Find(k K) (V, bool, error) {
	v, found, _, err := t.find(k)
	return v, found, err
}

// Set writes v under k (last writer wins) and returns once the write is in
// the global log and in this node's copy.
func (t *GlobalTable[K, V]) Set(ctx context.Context, k K, v V) error {
	vb, err := t.cfg.Values.Encode(v)
	if err != nil {
		return fmt.Errorf("global table %s: encode value: %w", t.cfg.Name, err)
	}
	return t.write(ctx, k, vb, false, nil)
}

// Delete removes k (last writer wins) and returns once the tombstone is in
// the global log and in this node's copy.
func (t *GlobalTable[K, V]) Delete(ctx context.Context, k K) error {
	return t.write(ctx, k, nil, true, nil)
}

func (t *GlobalTable[K, V]) write(ctx context.Context, k K, vb []byte, del bool, expect *uint64) error {
	kb, err := keyCodec[K]{t.cfg.Name, t.cfg.Keys}.encode(k)
	if err != nil {
		return err
	}
	_, err = t.writeKey(ctx, kb, vb, del, expect)
	return err
}

// writeKey writes the record of encoded key kb and returns its sequence.
func (t *GlobalTable[K, V]) writeKey(ctx context.Context, kb, vb []byte, del bool, expect *uint64) (uint64, error) {
	g, err := t.replica()
	if err != nil {
		return 0, err
	}
	if err := g.waitReady(ctx); err != nil {
		return 0, fmt.Errorf("global table %s: %w", t.cfg.Name, err)
	}
	rec := port.Record{Table: t.cfg.Name, Key: kb, Value: vb, Delete: del}
	seq, err := g.put(ctx, rec, expect)
	if err != nil {
		return 0, fmt.Errorf("global table %s: %w", t.cfg.Name, err)
	}
	return seq, nil
}

// PutJSON implements WritableCollection: value is JSON as ValueJSON shows
// values (for codec.RawJSON, any JSON).
func (t *GlobalTable[K, V]) PutJSON(ctx context.Context, key []byte, value json.RawMessage, expect *uint64) (uint64, error) {
	vb, err := valueFromJSON(t.cfg.Values, value)
	if err != nil {
		return 0, fmt.Errorf("global table %s: %w", t.cfg.Name, err)
	}
	if expect, err = t.absent(key, expect); err != nil {
		return 0, err
	}
	return t.writeKey(ctx, key, vb, false, expect)
}

// DeleteKey implements WritableCollection.
func (t *GlobalTable[K, V]) DeleteKey(ctx context.Context, key []byte, expect *uint64) (uint64, error) {
	expect, err := t.absent(key, expect)
	if err != nil {
		return 0, err
	}
	return t.writeKey(ctx, key, nil, true, expect)
}

// absent gives an expected revision of 0 its meaning for WritableCollection
// ("the key must not exist"): for a key this node's copy holds deleted, the
// revision of its tombstone. If the copy is stale, the log refuses the
// write (port.ErrConflict), as it should.
func (t *GlobalTable[K, V]) absent(key []byte, expect *uint64) (*uint64, error) {
	if expect == nil || *expect != 0 {
		return expect, nil
	}
	g, err := t.replica()
	if err != nil {
		return nil, err
	}
	_, found, seq, err := g.get(t.cfg.Name, key)
	if err != nil {
		return nil, err
	}
	if !found && seq > 0 {
		return &seq, nil
	}
	return expect, nil
}

// Revision implements WritableCollection.
func (t *GlobalTable[K, V]) Revision(key []byte) (uint64, error) {
	g, err := t.replica()
	if err != nil {
		return 0, err
	}
	_, _, seq, err := g.get(t.cfg.Name, key)
	return seq, err
}

// Update replaces the value of k by f's result, atomically: f gets the
// current value (the default and found false for a missing key) and the
// write succeeds only if no other write to k came in between; otherwise
// this node's copy catches up and f runs again, until ctx ends. f must
// have no side effects. Update returns the value written, once it is in
// this node's copy.
func (t *GlobalTable[K, V]) Update(ctx context.Context, k K, f func(v V, found bool) (V, error)) (V, error) {
	g, err := t.replica()
	if err != nil {
		var zero V
		return zero, err
	}
	if err := g.waitReady(ctx); err != nil {
		var zero V
		return zero, fmt.Errorf("global table %s: %w", t.cfg.Name, err)
	}
	pause := time.Millisecond
	for {
		old, found, seq, err := t.find(k)
		if err != nil {
			return old, err
		}
		v, err := f(old, found)
		if err != nil {
			return v, err
		}
		vb, err := t.cfg.Values.Encode(v)
		if err != nil {
			return v, fmt.Errorf("global table %s: encode value: %w", t.cfg.Name, err)
		}
		err = t.write(ctx, k, vb, false, &seq)
		if !errors.Is(err, port.ErrConflict) {
			return v, err
		}
		// Another write came first: catch up with it and try again. A
		// replicated log also refuses a check while another write to the
		// key is in flight, so back off a little, with jitter.
		if err := g.catchUp(ctx); err != nil {
			return v, fmt.Errorf("global table %s: update: %w", t.cfg.Name, err)
		}
		if !sleep(ctx, pause/2+rand.N(pause)) {
			return v, fmt.Errorf("global table %s: update: %w", t.cfg.Name, ctx.Err())
		}
		pause = min(2*pause, 100*time.Millisecond)
	}
}

// Sync waits until this node's copy holds every write the global log held
// when Sync was called: a Get after Sync sees every write that completed
// (on any node) before Sync began. While the log's state cannot be read (a
// replicated log electing its leader) Sync waits; it fails with the last
// error when ctx ends first.
func (t *GlobalTable[K, V]) Sync(ctx context.Context) error {
	g, err := t.replica()
	if err != nil {
		return err
	}
	if err := g.catchUp(ctx); err != nil {
		return fmt.Errorf("global table %s: sync: %w", t.cfg.Name, err)
	}
	return nil
}

// ParseKey implements Collection.
func (t *GlobalTable[K, V]) ParseKey(s string) ([]byte, error) {
	return keyCodec[K]{t.cfg.Name, t.cfg.Keys}.parse(s)
}

// FormatKey implements Collection.
func (t *GlobalTable[K, V]) FormatKey(b []byte) (string, error) {
	return keyCodec[K]{t.cfg.Name, t.cfg.Keys}.format(b)
}

// ValueJSON implements Collection.
func (t *GlobalTable[K, V]) ValueJSON(b []byte) (json.RawMessage, error) {
	return valueJSON(t.cfg.Values, b, func(b []byte) (V, error) {
		v, err := t.cfg.Values.Decode(b)
		if err != nil {
			return v, fmt.Errorf("global table %s: decode value: %w", t.cfg.Name, err)
		}
		return v, nil
	})
}
