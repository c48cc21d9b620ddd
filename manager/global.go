package manager

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgetables/edgetables/manager/port"
	"github.com/edgetables/edgetables/manager/status"
	"github.com/edgetables/edgetables/store"
)

// globalRetry is the pause before a failed global replica starts again.
const globalRetry = time.Second

// globalStoreID is the store of the global tables in Config.GlobalStores.
const globalStoreID = 0

// globalTable marks the tables whose records go to the global log.
type globalTable interface {
	Collection
	global()
}

// globalReplica is this node's copy of every global table: one store that
// replays the global log and then follows it, as a standby follows a
// partition's changelog. Its goroutine (run) is the store's only writer;
// readers share the store under mu.
type globalReplica struct {
	m   *TableManager
	log *slog.Logger

	mu sync.RWMutex // guards st (replaced when the store is rebuilt)
	st store.Store

	epoch     string // owned by run
	applied   atomic.Uint64
	highWater atomic.Uint64
	ready     atomic.Bool
	readyCh   chan struct{} // closed at the first catch-up

	sigMu sync.Mutex
	sig   chan struct{} // closed and replaced whenever applied moves
}

func newGlobalReplica(m *TableManager) *globalReplica {
	return &globalReplica{
		m:       m,
		log:     m.log.With("global", true),
		readyCh: make(chan struct{}),
		sig:     make(chan struct{}),
	}
}

func (g *globalReplica) status() *status.GlobalStatus {
	return &status.GlobalStatus{Ready: g.ready.Load(), AppliedOffset: g.applied.Load(), HighWater: g.highWater.Load()}
}

// run keeps the replica following the log until ctx ends, starting again
// after a second when it fails; then it closes the store.
func (g *globalReplica) run(ctx context.Context) {
	defer func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.st != nil {
			_ = g.st.Close()
			g.st = nil
		}
	}()
	for {
		err := g.follow(ctx)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errStoreOpen) {
			g.log.Error("global tables: cannot open the local store; retrying", "err", err)
		} else {
			g.log.Warn("global tables: replica stopped; following again", "applied", g.applied.Load(), "err", err)
		}
		if !sleep(ctx, globalRetry) {
			return
		}
	}
}

// follow opens the store (rebuilding it if it cannot be trusted), replays
// the log to its end, marks the replica ready, then applies the log as it
// grows until ctx ends or a read fails.
func (g *globalReplica) follow(ctx context.Context) error {
	gl := g.m.cfg.Global
	state, err := gl.State(ctx)
	if err != nil {
		return fmt.Errorf("global log state: %w", err)
	}
	if err := g.open(state); err != nil {
		return err
	}
	if from := max(g.applied.Load()+1, state.First); from <= state.Last {
		start, before := time.Now(), g.applied.Load()
		err := gl.Replay(ctx, from, state.Last, g.m.cfg.RecoveryBufferSize, g.apply)
		if err != nil {
			return fmt.Errorf("replay global log from %d to %d: %w", from, state.Last, err)
		}
		if got := g.applied.Load(); got < state.Last {
			// The replay passed every message up to Last: those after
			// got were removed (expired tombstones at the log's end,
			// which has no commit markers). Record that the store is at
			// Last, or every restart would rebuild it.
			if err := g.st.Apply(store.Batch{Offsets: store.Offsets{Changelog: state.Last, Epoch: g.epoch}}); err != nil {
				return fmt.Errorf("replay of the global log from %d to %d: %w", from, state.Last, err)
			}
			g.applied.Store(state.Last)
			g.signal()
		}
		g.log.Info("global tables recovered", "from", from, "to", state.Last, "applied_from", before, "took", time.Since(start).Round(time.Millisecond))
	}
	g.highWater.Store(max(g.highWater.Load(), state.Last))
	if g.ready.CompareAndSwap(false, true) {
		close(g.readyCh)
	}
	err = gl.Follow(ctx, max(g.applied.Load(), state.Last)+1, g.m.cfg.StandbyBufferSize, func(es []port.Entry) error {
		if err := g.apply(es); err != nil {
			return err
		}
		g.highWater.Store(max(g.highWater.Load(), es[len(es)-1].Seq))
		return nil
	})
	if err == nil && ctx.Err() == nil {
		err = errors.New("global log follower ended")
	}
	return err
}

// open opens the store unless the open one agrees with the log's state.
func (g *globalReplica) open(state port.LogState) error {
	a := g.applied.Load()
	if g.st != nil && a <= state.Last && (a == 0 || (g.epoch == state.Epoch && a+1 >= state.First)) && !missedTombstones(state, a) {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.st != nil {
		_ = g.st.Close()
		g.st = nil
	}
	st, offs, reason, err := openTrusted(g.log, g.m.cfg.GlobalStores, globalStoreID, state, g.m.storeTables(true), nil)
	if err != nil {
		return err
	}
	if reason != "" && g.ready.Load() {
		// Readers saw the old store; the rebuilt one is empty until the
		// replay ends.
		g.log.Warn("global tables: serving an empty store until the rebuild ends", "reason", reason)
	}
	g.st, g.epoch = st, state.Epoch
	g.applied.Store(offs.Changelog)
	g.signal()
	return nil
}

// apply writes one batch of entries to the store with the offset they
// bring it to, in one transaction: each record's value, and the sequence
// of the key's last record (kept for deleted keys too), which conditional
// writes expect.
func (g *globalReplica) apply(es []port.Entry) error {
	if len(es) == 0 {
		return nil
	}
	muts := make([]store.Mutation, 0, 2*len(es))
	for _, e := range es {
		if e.Commit != nil {
			continue
		}
		t, ok := g.m.tables[e.Record.Table]
		if _, global := t.(globalTable); !ok || !global {
			g.m.counters.unknownRecords.Add(1)
			continue
		}
		var seq [8]byte
		binary.BigEndian.PutUint64(seq[:], e.Seq)
		muts = append(muts,
			store.Mutation{Table: e.Record.Table, Key: e.Record.Key, Value: e.Record.Value, Delete: e.Record.Delete},
			store.Mutation{Table: seqTable(e.Record.Table), Key: e.Record.Key, Value: seq[:]})
	}
	last := es[len(es)-1].Seq
	if err := g.st.Apply(store.Batch{Mutations: muts, Offsets: store.Offsets{Changelog: last, Epoch: g.epoch}}); err != nil {
		return fmt.Errorf("apply global log %d..%d: %w", es[0].Seq, last, err)
	}
	g.applied.Store(last)
	g.signal()
	return nil
}

// seqTable is the store table holding, per key of global table t, the
// sequence of its last record.
func seqTable(t string) string { return t + "\x00seq" }

// signal wakes every waitApplied.
func (g *globalReplica) signal() {
	g.sigMu.Lock()
	close(g.sig)
	g.sig = make(chan struct{})
	g.sigMu.Unlock()
}

// waitReady waits for the first catch-up.
func (g *globalReplica) waitReady(ctx context.Context) error {
	select {
	case <-g.readyCh:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("global tables not recovered yet: %w", ctx.Err())
	}
}

// waitApplied waits until the store holds every record up to seq.
func (g *globalReplica) waitApplied(ctx context.Context, seq uint64) error {
	for {
		g.sigMu.Lock()
		sig := g.sig
		g.sigMu.Unlock()
		if g.ready.Load() && g.applied.Load() >= seq {
			return nil
		}
		select {
		case <-sig:
		case <-ctx.Done():
			return fmt.Errorf("global log sequence %d not applied here yet (applied %d): %w", seq, g.applied.Load(), ctx.Err())
		}
	}
}

// catchUp waits until the store holds everything the log held when it was
// called. The log's state is asked again, backing off up to a second,
// while it cannot be read (a replicated log electing its leader, after a
// node died or came back), until ctx ends.
func (g *globalReplica) catchUp(ctx context.Context) error {
	backoff := 50 * time.Millisecond
	for {
		state, err := g.m.cfg.Global.State(ctx)
		if err == nil {
			return g.waitApplied(ctx, state.Last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("global log state: %w (%w)", err, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// read runs fn on the store once the replica is ready.
func (g *globalReplica) read(fn func(st store.Store) error) error {
	if !g.ready.Load() {
		return fmt.Errorf("global tables: %w", ErrNotReady)
	}
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.st == nil {
		return fmt.Errorf("global tables: %w", ErrNotReady)
	}
	return fn(g.st)
}

// get returns the value of key in table and the sequence of the key's last
// record (0: never written).
func (g *globalReplica) get(table string, key []byte) (value []byte, found bool, seq uint64, err error) {
	err = g.read(func(st store.Store) error {
		s, ok, err := st.Get(seqTable(table), key)
		if err != nil {
			return err
		}
		if ok && len(s) == 8 {
			seq = binary.BigEndian.Uint64(s)
		}
		value, found, err = st.Get(table, key)
		return err
	})
	if err != nil {
		return nil, false, 0, fmt.Errorf("global table %s: %w", table, err)
	}
	return value, found, seq, nil
}

// put writes rec to the global log, conditionally when expect is set, and
// waits until this node's store holds it.
func (g *globalReplica) put(ctx context.Context, rec port.Record, expect *uint64) (uint64, error) {
	seq, err := g.m.cfg.Global.Put(ctx, rec, expect)
	if err != nil {
		return 0, err
	}
	return seq, g.waitApplied(ctx, seq)
}

// WritableCollection is a table any node may write outside agents (a
// GlobalTable); the HTTP API's PUT and DELETE use it. Keys are encoded
// (ParseKey); expect, when set, makes the write conditional: on the key's
// revision, or with 0 on the key not existing (never written or deleted);
// port.ErrConflict otherwise. Writes return the new revision: the sequence of
// the key's record in the global log.
type WritableCollection interface {
	Collection
	// PutJSON writes value, given as JSON in the form ValueJSON returns,
	// under key. An unusable value gives an error wrapping ErrBadValue.
	PutJSON(ctx context.Context, key []byte, value json.RawMessage, expect *uint64) (uint64, error)
	// DeleteKey removes key.
	DeleteKey(ctx context.Context, key []byte, expect *uint64) (uint64, error)
	// Revision returns the sequence of key's last record in this node's
	// copy (0: never written; a deleted key's is its tombstone's).
	Revision(key []byte) (uint64, error)
}

// startGlobal starts this node's global replica, if there are global
// tables, and waits for its first catch-up: agents may read global tables,
// so they must not run on a partial copy. stop ends the replica.
func (m *TableManager) startGlobal(ctx context.Context) (stop func(), err error) {
	if m.global == nil {
		return func() {}, nil
	}
	gctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.global.run(gctx)
	}()
	stop = func() { cancel(); <-done }
	if err := m.global.waitReady(ctx); err != nil {
		stop()
		if ctx.Err() != nil {
			return nil, nil
		}
		return nil, err
	}
	return stop, nil
}

// GlobalLag returns how many sequences this node's copy of the global
// tables is behind the global log's end (one request). It fails without
// global tables.
func (m *TableManager) GlobalLag(ctx context.Context) (uint64, error) {
	if m.global == nil {
		return 0, errors.New("no global tables")
	}
	state, err := m.cfg.Global.State(ctx)
	if err != nil {
		return 0, fmt.Errorf("global log state: %w", err)
	}
	if a := m.global.applied.Load(); a < state.Last {
		return state.Last - a, nil
	}
	return 0, nil
}
