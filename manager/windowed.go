package manager

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/edgetables/edgetables/manager/codec"
	"github.com/edgetables/edgetables/manager/window"
	"github.com/edgetables/edgetables/store"
)

// WindowedTableConfig declares a windowed table.
type WindowedTableConfig[K, V any] struct {
	// Name, Keys, Values, Default and Spec are as in TableConfig.
	Name    string
	Keys    codec.Codec[K]
	Values  codec.Codec[V]
	Default func() V
	Spec    map[string]string
	// Windows cuts time into windows (Tumbling or Hopping). Required.
	Windows window.Windows
	// Time says where an event's time comes from (default: the stream's
	// time, Event.Time).
	Time window.TimeSource
	// OnWindowClose, when set, is called once for every window that
	// closes, with its final value, on the partition's active owner. It
	// runs on the processing goroutine with an Event of the key's
	// partition: table writes made through that Event are committed
	// together with the window's removal, so that (with the exactly-once
	// processing guarantee) they happen exactly once even across crashes
	// and failovers. Effects outside tables happen once per call: a crash
	// after the call and before the commit calls it again for the same
	// window on the next owner. An error (or a panic) drops the call's
	// writes, keeps the window, and retries it a second later; it is
	// logged with table, partition, key and window.
	OnWindowClose func(e *Event, key K, w window.Window, v V) error
	// Clock is the node's clock as the table reads it (default
	// time.Now). The table's closing clock follows it (see MaxClockSkew):
	// it closes windows and is "now" for TimeNow and for reads of the
	// current window.
	Clock func() time.Time
	// MaxClockSkew bounds how far ahead the table trusts times (0:
	// DefaultMaxClockSkew, an hour; negative: no bound, the table follows
	// Clock and takes any event time from 1970 to 2200).
	//
	// An event time more than MaxClockSkew ahead of Clock is refused with
	// ErrEventTime (a dead letter) instead of creating windows. A jump of
	// Clock ahead by more than MaxClockSkew (by the monotonic clock) is
	// not followed at once: windows close by the clock as it ran before
	// the jump, and no closing horizon beyond it is persisted, until the
	// clock comes back, an event time from the payload or a header agrees
	// with it, or the clock has kept the jump for MaxClockSkew (then it
	// was a correction). Larger tolerates devices further ahead and
	// follows corrections later; smaller bounds how early a bad clock can
	// close windows (see docs/ARCHITECTURE.md, Closed windows).
	MaxClockSkew time.Duration
	// TombstoneTTL is how long the changelog keeps the tombstone of a
	// closed window (0: DefaultTombstoneTTL; negative: no TTL of its own,
	// like the tombstones of plain tables, which the changelog keeps for
	// ever or, if it has one, for its own tombstone TTL; rounded up to
	// whole seconds). Longer
	// keeps more tombstones in the changelog, one per window closed within
	// the TTL, and so lengthens recovery; shorter makes it likelier that a
	// store recovering from an older offset misses a tombstone, which
	// costs a removal at the owner's next closing pass and nothing else
	// (see WindowedTable).
	TombstoneTTL time.Duration
}

// DefaultTombstoneTTL is the default WindowedTableConfig.TombstoneTTL. The
// stores that may still hold a window when it closes read its tombstone
// within seconds (the owner writes it; standbys follow the log as it
// grows) or within a restart (a node that was down replays from its
// offset); an hour covers those with a wide margin, while the changelog
// keeps only the last hour of closes (1,000 keys with one-minute windows:
// 60,000 tombstones, where permanent ones grew by 1.44 million a day).
const DefaultTombstoneTTL = time.Hour

// WindowedTable is a table whose values are kept per time window, like
// Faust's tumbling and hopping tables: a write updates every window that
// contains the event's time.
//
// Storage: window w of key k is stored under k's encoding followed by w's
// start (8 bytes, big-endian), so that a key's windows are adjacent and in
// time order, and in the partition of k itself (PartitionOf the plain
// encoded key): the windows of a key live where the key's events are
// processed.
//
// Closing. A window is closed when the table's closing clock reaches its
// end plus Windows.Expires. The closing clock is Clock, except after a jump
// ahead of more than MaxClockSkew, which it follows only once confirmed
// (see MaxClockSkew). The partition's owner checks for closed windows at
// every commit interval, under load too: a check with nothing due compares
// the clock with the next closing time, and one with windows due visits
// only those (the owner lists the partition's windows by start: one scan
// of the store when the partition becomes active, then each window as it
// is created). For each closed window it calls OnWindowClose and writes a
// tombstone, committed like every write, so the window leaves the store and
// the changelog. Windows restored by recovery close the same way: the scan
// at activation finds them. With each batch of closes the partition
// records its closing horizon (the closing clock's reading that closed
// them) in the changelog; later writes to any window at or before the
// horizon are refused, even on a new owner whose clock is behind, so a
// window once closed never comes back and is never closed twice.
//
// Tombstones of closed windows expire from the changelog after
// TombstoneTTL, so that the log does not grow by one message per window
// ever closed. A store that was behind when a window closed and replays
// the log only after its tombstone expired (a node down for longer than
// the TTL) keeps the window: a remnant. It is harmless. Readers do not see
// it: the closing horizon, a permanent record that the replay does read,
// is at or past its closing time. Nor is it closed twice: the horizon
// record also carries how far closing is complete (every window up to a
// closing time and key has been closed), a tombstone gets its TTL only if
// the record written with it covers its window, and the owner's closing
// pass removes the windows that record covers without calling
// OnWindowClose.
type WindowedTable[K, V any] struct {
	cfg   WindowedTableConfig[K, V]
	ws    window.Windows
	m     *TableManager
	clock *tableClock

	mu    sync.Mutex
	marks map[int]*closeMark // by partition; see closeWindows
}

// closeMark is what a table knows of the windows of one partition, valid
// while that partition stays active (same activation): its windows, the
// next closing time and its closing state.
type closeMark struct {
	p           *partition
	activations uint64
	at          time.Time    // the next pass is due then
	cs          closingState // as the last pass left it
	idx         *windowIndex
}

// horizonKey is the store key of a partition's closing horizon: empty, so
// it cannot be a window key (at least 8 bytes).
var horizonKey = []byte{}

// NewWindowedTable returns a windowed table to Add to a TableManager.
func NewWindowedTable[K, V any](cfg WindowedTableConfig[K, V]) *WindowedTable[K, V] {
	c := &tableClock{wall: cfg.Clock, mono: monotonic, skew: cfg.MaxClockSkew}
	if c.wall == nil {
		c.wall = time.Now
	}
	if c.skew == 0 {
		c.skew = DefaultMaxClockSkew
	}
	return &WindowedTable[K, V]{cfg: cfg, clock: c, marks: make(map[int]*closeMark)}
}

// Name returns the table's name.
func (t *WindowedTable[K, V]) Name() string { return t.cfg.Name }

// Spec implements Collection.
func (t *WindowedTable[K, V]) Spec() map[string]string { return t.cfg.Spec }

// MaxClockSkew returns WindowedTableConfig.MaxClockSkew with its default
// filled in (negative: no bound).
func (t *WindowedTable[K, V]) MaxClockSkew() time.Duration { return t.clock.skew }

// Windows returns the table's windows, with defaults filled in.
func (t *WindowedTable[K, V]) Windows() window.Windows {
	if ws, err := t.cfg.Windows.WithDefaults(); err == nil {
		return ws
	}
	return t.cfg.Windows
}

func (t *WindowedTable[K, V]) bind(m *TableManager) error {
	if err := ValidateTableName(t.cfg.Name); err != nil {
		return err
	}
	if t.cfg.Keys == nil || t.cfg.Values == nil {
		return fmt.Errorf("table %q: Keys and Values codecs are required", t.cfg.Name)
	}
	ws, err := t.cfg.Windows.WithDefaults()
	if err != nil {
		return fmt.Errorf("table %q: %w", t.cfg.Name, err)
	}
	if err := t.cfg.Time.Validate(); err != nil {
		return fmt.Errorf("table %q: %w", t.cfg.Name, err)
	}
	if heldBy(t.m, m) {
		return fmt.Errorf("table %q: already added to another manager", t.cfg.Name)
	}
	t.ws, t.m = ws, m
	t.clock.mu.Lock()
	t.clock.log = m.log.With("table", t.cfg.Name)
	t.clock.mu.Unlock()
	return nil
}

// now returns the table's closing clock.
func (t *WindowedTable[K, V]) now() time.Time { return t.clock.read().now }

func (t *WindowedTable[K, V]) missing() V {
	if t.cfg.Default != nil {
		return t.cfg.Default()
	}
	var zero V
	return zero
}

func (t *WindowedTable[K, V]) encodeKey(k K) ([]byte, error) {
	return keyCodec[K]{t.cfg.Name, t.cfg.Keys}.encode(k)
}

// eventKey encodes k and checks that it belongs to e's partition.
func (t *WindowedTable[K, V]) eventKey(e *Event, k K) ([]byte, error) {
	kb, err := t.encodeKey(k)
	if err != nil {
		return nil, err
	}
	if e.part == nil {
		return nil, fmt.Errorf("table %s: outside an agent", t.cfg.Name)
	}
	if p := PartitionOf(kb, e.part.partitions); p != e.Partition {
		return nil, fmt.Errorf("table %s: key %q in partition %d, event in %d: %w", t.cfg.Name, kb, p, e.Partition, ErrWrongPartition)
	}
	return kb, nil
}

// Time returns the time of e as this table reads it. An error wrapping
// ErrEventTime says that the table refuses it: outside 1970 to 2200, or
// more than MaxClockSkew ahead of the node's clock.
func (t *WindowedTable[K, V]) Time(e *Event) (time.Time, error) {
	return t.eventTime(e, t.clock.read())
}

// eventTime returns the time of e, read with the clock reading r, checked.
func (t *WindowedTable[K, V]) eventTime(e *Event, r clockReading) (time.Time, error) {
	ts, err := eventTime(t.cfg.Time, e, r.now)
	if err != nil {
		return ts, err
	}
	if err := checkAhead(ts, r.wall, t.clock.skew); err != nil {
		return ts, err
	}
	if k := t.cfg.Time.Kind; k == window.TimeField || k == window.TimeHeader {
		t.clock.vouch(ts, r)
	}
	return ts, nil
}

// Update applies f to every open window of k that contains the event's
// time, in start order, and writes what it returns (found is false for a
// window without a value yet, v then being the default). Windows already
// closed are skipped; if all are, Update returns ErrWindowClosed and
// writes nothing.
func (t *WindowedTable[K, V]) Update(e *Event, k K, f func(w window.Window, v V, found bool) (V, error)) error {
	kb, err := t.eventKey(e, k)
	if err != nil {
		return err
	}
	r := t.clock.read()
	ts, err := t.eventTime(e, r)
	if err != nil {
		return fmt.Errorf("table %s: %w", t.cfg.Name, err)
	}
	horizon, err := t.horizon(e.getStored)
	if err != nil {
		return err
	}
	now := later(r.now, horizon)
	open := 0
	for _, w := range t.ws.Containing(ts) {
		if t.ws.Closed(w, now) {
			continue
		}
		open++
		sk := windowKey(kb, w.Start)
		cur, found := t.missing(), false
		b, ok, err := e.getStored(t.cfg.Name, sk)
		if err != nil {
			return err
		}
		if ok {
			if cur, err = t.decodeValue(b); err != nil {
				return err
			}
			found = true
		}
		nv, err := f(w, cur, found)
		if err != nil {
			return err
		}
		vb, err := t.cfg.Values.Encode(nv)
		if err != nil {
			return fmt.Errorf("table %s: encode value: %w", t.cfg.Name, err)
		}
		if err := e.putStored(t.cfg.Name, sk, vb, false); err != nil {
			return err
		}
		if !found {
			t.noteWindow(e.part, sk, closeAt(t.ws, w))
		}
	}
	if open == 0 {
		return fmt.Errorf("table %s: event time %s: every window holding it closed by %s: %w",
			t.cfg.Name, ts.UTC().Format(time.RFC3339Nano), now.UTC().Format(time.RFC3339Nano), ErrWindowClosed)
	}
	return nil
}

// Set writes v to every open window of k that contains the event's time
// (see Update).
func (t *WindowedTable[K, V]) Set(e *Event, k K, v V) error {
	return t.Update(e, k, func(window.Window, V, bool) (V, error) { return v, nil })
}

// Current returns k's value in the most recent window containing the
// event's time, as the agent processing e sees it (its own writes first).
func (t *WindowedTable[K, V]) Current(e *Event, k K) (V, bool, error) {
	ts, err := t.Time(e)
	if err != nil {
		return t.missing(), false, fmt.Errorf("table %s: %w", t.cfg.Name, err)
	}
	return t.GetAt(e, k, ts)
}

// GetAt returns k's value in the most recent window containing ts, as the
// agent processing e sees it. A missing or closed window gives the default.
func (t *WindowedTable[K, V]) GetAt(e *Event, k K, ts time.Time) (V, bool, error) {
	kb, err := t.eventKey(e, k)
	if err != nil {
		return t.missing(), false, err
	}
	horizon, err := t.horizon(e.getStored)
	if err != nil {
		return t.missing(), false, err
	}
	w := t.ws.Current(ts)
	if w.Start.IsZero() || t.ws.Closed(w, later(t.now(), horizon)) {
		return t.missing(), false, nil // no window holds ts, or closed
	}
	b, ok, err := e.getStored(t.cfg.Name, windowKey(kb, w.Start))
	if err != nil || !ok {
		return t.missing(), false, err
	}
	v, err := t.decodeValue(b)
	return v, err == nil, err
}

// LookupAt returns the committed value of k in the most recent window
// containing ts, from this node's local store; found is false when that
// window has no value or is closed. Errors as Table.Lookup.
func (t *WindowedTable[K, V]) LookupAt(ctx context.Context, k K, ts time.Time) (window.Value[V], bool, error) {
	ws, err := t.lookup(ctx, k, window.Query{At: ts})
	if err != nil || len(ws) == 0 {
		return window.Value[V]{Window: t.ws.Current(ts), Value: t.missing()}, false, err
	}
	return ws[0], true, nil
}

// LookupNow is LookupAt the table's clock: the current window.
func (t *WindowedTable[K, V]) LookupNow(ctx context.Context, k K) (window.Value[V], bool, error) {
	return t.LookupAt(ctx, k, t.now())
}

// LookupDelta is LookupAt d before the table's clock (Faust's delta).
func (t *WindowedTable[K, V]) LookupDelta(ctx context.Context, k K, d time.Duration) (window.Value[V], bool, error) {
	return t.LookupAt(ctx, k, t.now().Add(-d))
}

// LookupAll returns every open window of k with a committed value, oldest
// first. Cost: a scan of the stored keys that start with k's encoding.
func (t *WindowedTable[K, V]) LookupAll(ctx context.Context, k K) ([]window.Value[V], error) {
	return t.lookup(ctx, k, window.Query{All: true})
}

func (t *WindowedTable[K, V]) lookup(ctx context.Context, k K, q window.Query) ([]window.Value[V], error) {
	if t.m == nil {
		return nil, fmt.Errorf("table %s: not added to a manager", t.cfg.Name)
	}
	kb, err := t.encodeKey(k)
	if err != nil {
		return nil, err
	}
	es, _, err := t.m.Windows(ctx, t.cfg.Name, kb, q)
	if err != nil {
		return nil, err
	}
	out := make([]window.Value[V], 0, len(es))
	for _, e := range es {
		v, err := t.decodeValue(e.Value)
		if err != nil {
			return nil, err
		}
		out = append(out, window.Value[V]{Window: e.Window, Value: v})
	}
	return out, nil
}

func (t *WindowedTable[K, V]) decodeValue(b []byte) (V, error) {
	v, err := t.cfg.Values.Decode(b)
	if err != nil {
		return v, fmt.Errorf("table %s: decode value: %w: %w", t.cfg.Name, ErrStoredValue, err)
	}
	return v, nil
}

// horizon reads the partition's closing horizon with get (zero: none).
func (t *WindowedTable[K, V]) horizon(get func(table string, key []byte) ([]byte, bool, error)) (time.Time, error) {
	c, err := t.closing(get)
	return c.horizon, err
}

// closing reads the partition's closing state with get (zero: none).
func (t *WindowedTable[K, V]) closing(get func(table string, key []byte) ([]byte, bool, error)) (closingState, error) {
	b, ok, err := get(t.cfg.Name, horizonKey)
	if err != nil || !ok {
		return closingState{}, err
	}
	return decodeClosing(t.cfg.Name, b)
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// WindowedCollection is a Collection whose values live in time windows (a
// WindowedTable), whatever its key and value types.
type WindowedCollection interface {
	Collection
	// Windows returns how the table cuts time.
	Windows() window.Windows
	// ParseStoreKey parses the text form of a stored window key, KEY@START
	// (START in RFC 3339), as listings show them.
	ParseStoreKey(s string) ([]byte, error)

	readWindows(st store.Store, key []byte, q window.Query) ([]window.Entry, error)
}

// Windows returns the committed windows of key (encoded) in the windowed
// table named table, from this node's store, with key's partition. Errors:
// ErrTableNotFound, ErrNotWindowed, ErrNotOwner, ErrNotReady.
func (m *TableManager) Windows(ctx context.Context, table string, key []byte, q window.Query) ([]window.Entry, int, error) {
	c, ok := m.tables[table]
	if !ok {
		return nil, 0, fmt.Errorf("%w: %s", ErrTableNotFound, table)
	}
	wc, ok := c.(WindowedCollection)
	if !ok {
		return nil, 0, fmt.Errorf("%w: %s", ErrNotWindowed, table)
	}
	id := PartitionOf(key, m.cfg.Partitions)
	p, err := m.readable(id)
	if err != nil {
		return nil, id, err
	}
	if err := ctx.Err(); err != nil {
		return nil, id, err
	}
	es, err := wc.readWindows(p.store, key, q)
	if err != nil {
		return nil, id, fmt.Errorf("table %s partition %d: %w", table, id, err)
	}
	return es, id, nil
}

// readWindows reads key's committed open windows from st.
func (t *WindowedTable[K, V]) readWindows(st store.Store, key []byte, q window.Query) ([]window.Entry, error) {
	horizon, err := t.horizon(st.Get)
	if err != nil {
		return nil, err
	}
	now := t.now()
	at := q.At
	if at.IsZero() {
		at = now
	}
	now = later(now, horizon)
	if !q.All {
		w := t.ws.Current(at)
		if w.Start.IsZero() || t.ws.Closed(w, now) {
			return nil, nil // no window holds at, or closed
		}
		v, ok, err := st.Get(t.cfg.Name, windowKey(key, w.Start))
		if err != nil || !ok {
			return nil, err
		}
		return []window.Entry{{Window: w, Value: v}}, nil
	}
	var out []window.Entry
	err = st.Scan(t.cfg.Name, key, nil, func(sk, v []byte) bool {
		k, start, ok := splitWindowKey(sk)
		if !ok || !bytes.Equal(k, key) {
			return true // a longer key with the same prefix
		}
		if w := windowAt(t.ws, start); !t.ws.Closed(w, now) {
			out = append(out, window.Entry{Window: w, Value: bytes.Clone(v)})
		}
		return true
	})
	return out, err
}

// ParseKey implements Collection: the text form of a key (not of a window).
func (t *WindowedTable[K, V]) ParseKey(s string) ([]byte, error) {
	return keyCodec[K]{t.cfg.Name, t.cfg.Keys}.parse(s)
}

// ParseStoreKey implements WindowedCollection.
func (t *WindowedTable[K, V]) ParseStoreKey(s string) ([]byte, error) {
	i := strings.LastIndexByte(s, '@')
	if i < 0 {
		return nil, fmt.Errorf("table %s: window key %q: want KEY@START", t.cfg.Name, s)
	}
	start, err := time.Parse(time.RFC3339Nano, s[i+1:])
	if err != nil {
		return nil, fmt.Errorf("table %s: window key %q: start: %w", t.cfg.Name, s, err)
	}
	if _, ok := nanos(start); !ok {
		return nil, fmt.Errorf("table %s: window key %q: start outside 1678 to 2262", t.cfg.Name, s)
	}
	kb, err := t.ParseKey(s[:i])
	if err != nil {
		return nil, err
	}
	return windowKey(kb, start), nil
}

// FormatKey implements Collection: a stored window key reads KEY@START,
// START in RFC 3339 (UTC).
func (t *WindowedTable[K, V]) FormatKey(b []byte) (string, error) {
	kb, start, ok := splitWindowKey(b)
	if !ok {
		return "", fmt.Errorf("table %s: stored key of %d bytes is not a window key", t.cfg.Name, len(b))
	}
	k, err := keyCodec[K]{t.cfg.Name, t.cfg.Keys}.format(kb)
	if err != nil {
		return "", err
	}
	return k + "@" + time.Unix(0, start).UTC().Format(time.RFC3339Nano), nil
}

// ValueJSON implements Collection.
func (t *WindowedTable[K, V]) ValueJSON(b []byte) (json.RawMessage, error) {
	return valueJSON(t.cfg.Values, b, t.decodeValue)
}

// hiddenKey implements hiddenKeys: the closing horizon is not an entry.
func (t *WindowedTable[K, V]) hiddenKey(k []byte) bool { return len(k) == 0 }

// hiddenIn implements hiddenKeys.
func (t *WindowedTable[K, V]) hiddenIn(st store.Store) (int, error) {
	_, ok, err := st.Get(t.cfg.Name, horizonKey)
	if ok {
		return 1, err
	}
	return 0, err
}
