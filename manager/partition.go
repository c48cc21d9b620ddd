package manager

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgetables/edgetables/manager/port"
	"github.com/edgetables/edgetables/manager/status"
	"github.com/edgetables/edgetables/store"
)

// partition is one assigned partition: its store, its uncommitted writes and
// its offsets.
//
// The processing goroutine owns buf, inflight and due, and expectLast,
// refresh and pendingOffset while no commit of p is in flight; a commit in
// flight owns those three until the processing goroutine reaps it (see
// pipeline.go). Offsets shown by status are atomics; the store is safe for
// concurrent readers and one writer.
type partition struct {
	m          *TableManager
	id         int
	partitions int
	store      store.Store
	epoch      string

	state atomic.Value // PartitionState
	// activations counts the times p became active, so that what tables
	// remember about an active partition is dropped when it recovers again.
	activations atomic.Uint64

	// applied is the last changelog sequence held by the store; highWater
	// the changelog's last sequence when recovery started, or after this
	// node's last commit.
	applied   atomic.Uint64
	highWater atomic.Uint64
	// sourceSeq is the last source sequence committed (its effects are in
	// the changelog and the store).
	sourceSeq atomic.Uint64

	// failing is the current streak of failed commits (nil: the last
	// one succeeded); written by the processing goroutine, read by status.
	failing atomic.Pointer[commitFailure]
	// taskFailing is the current streak of failures of p's recovery or
	// standby task (nil: none); written by the task, read by status.
	taskFailing atomic.Pointer[status.TaskFailure]

	// logSource is the SourceSeq of the last commit marker replayed from
	// or written to the changelog (a check: markers never go back).
	logSource uint64
	// sourceEpoch is the source stream's epoch sourceSeq counts in ("":
	// unknown, from a store or marker older than source epochs). The
	// recovery task sets it, then the processing goroutine owns it.
	sourceEpoch string
	// behind, when set, says why p's recovery stopped: its changelog is
	// behind its store (behind.go). Read by Readiness and the status.
	behind atomic.Pointer[string]
	// remark makes the next commit write a marker even without writes:
	// the partition's source position was moved (sourceepoch.go).
	remark bool

	// expectLast is the changelog sequence this writer expects the log to
	// end at; refresh forces a State read before the next append.
	expectLast uint64
	refresh    bool
	// covered: every source message of p up to it has been dispatched to
	// p (its effects are in buf, the commit in flight or the store). While
	// attached, the reader delivers every message after m.examined, so p
	// covers m.examined as well; covered catches up with m.examined when p
	// is detached (the reader closes, fails or moves back). Only what p
	// covers may go into its commit marker: a position past it would skip
	// events never applied, one short of it would apply events twice.
	covered  uint64
	attached bool
	// parked: p's buffer is full and its commit cannot be written; p
	// takes no events (the reader goes on for the others) until its
	// commits go through, then the source is read again from what it
	// covers (park.go).
	parked bool
	// parkRetryAt and parkBackoff pace a parked partition's retries.
	parkRetryAt time.Time
	parkBackoff time.Duration

	// task is the goroutine recovering or following the partition; the
	// processor starts and stops it. caughtUp: a standby reached its log's
	// end once.
	task     *task
	caughtUp bool
	// stopReason tells the task why the processor stops it (a
	// SuspendReason; see stopTaskFor).
	stopReason atomic.Value
	// stale: recovery found a newer owner; p stays fenced until an
	// assignment moves it. Read by the status.
	stale atomic.Bool

	mu  sync.Mutex // guards buf, keys and inflight against status (sizes only)
	buf map[string]map[string]pending
	// keys counts the keys in buf.
	keys int
	// inflight is p's commit being written, or failed and waiting to be
	// written again: its writes are sealed, newer writes go to buf. Reads
	// look at buf, then inflight, then the store.
	inflight *commitJob
	// due: a commit of buf was asked for while inflight was running; it
	// starts as soon as inflight ends.
	due bool
	// pendingOffset is the changelog offset to persist at the next commit
	// (persistOffsetOnCommit).
	pendingOffset uint64
	// lastPersist is the source sequence last written to the store, at
	// persistedAt.
	lastPersist uint64
	persistedAt time.Time
}

type pending struct {
	value  []byte
	delete bool
	ttl    time.Duration // Record.TTL
}

func (p *partition) State() status.PartitionState {
	s, _ := p.state.Load().(status.PartitionState)
	return s
}

func (p *partition) setState(s status.PartitionState) { p.state.Store(s) }

// get returns the uncommitted value of key if there is one (the newest:
// buf, then the commit in flight), else the committed one.
func (p *partition) get(table string, key []byte) ([]byte, bool, error) {
	if t := p.buf[table]; t != nil {
		if w, ok := t[string(key)]; ok {
			return w.value, !w.delete, nil
		}
	}
	if j := p.inflight; j != nil {
		if w, ok := j.buf[table][string(key)]; ok {
			return w.value, !w.delete, nil
		}
	}
	return p.store.Get(table, key)
}

// merge adds an event's writes to the uncommitted buffer, coalescing writes
// to the same key.
func (p *partition) merge(ws []write) {
	if len(ws) == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.buf == nil {
		p.buf = make(map[string]map[string]pending)
	}
	for _, w := range ws {
		t := p.buf[w.table]
		if t == nil {
			t = make(map[string]pending)
			p.buf[w.table] = t
		}
		if _, ok := t[w.key]; !ok {
			p.keys++
		}
		t[w.key] = pending{value: w.value, delete: w.delete, ttl: w.ttl}
	}
}

// dirty reports whether uncommitted writes exist.
func (p *partition) dirty() bool { return len(p.buf) > 0 }

// recordsOf returns the writes of buf as changelog records, in table and
// key order, except that records of empty keys come last: a windowed
// table's closing horizon is then stored only after the tombstones it
// vouches for, even when a commit takes several batches and only the first
// ones are stored.
func recordsOf(buf map[string]map[string]pending) []port.Record {
	tables := make([]string, 0, len(buf))
	n := 0
	for t, keys := range buf {
		tables = append(tables, t)
		n += len(keys)
	}
	sort.Strings(tables)
	recs := make([]port.Record, 0, n)
	for _, t := range tables {
		start := len(recs)
		for k, w := range buf[t] {
			recs = append(recs, port.Record{Table: t, Key: []byte(k), Value: w.value, Delete: w.delete, TTL: w.ttl})
		}
		part := recs[start:]
		sort.Slice(part, func(i, j int) bool { return string(part[i].Key) < string(part[j].Key) })
	}
	// Stable: empty keys keep their table order among themselves.
	sort.SliceStable(recs, func(i, j int) bool { return len(recs[i].Key) != 0 && len(recs[j].Key) == 0 })
	return recs
}

// reset drops the uncommitted writes: buf and a commit that is not
// running (one that failed), and with them what p covers beyond its
// committed position. No commit of p may be running.
func (p *partition) reset() {
	p.mu.Lock()
	p.buf, p.keys, p.inflight = nil, 0, nil
	p.mu.Unlock()
	p.due = false
	p.covered, p.attached, p.parked = 0, false, false
	p.failing.Store(nil) // what failed is dropped
}

// hasInflight reports whether p has a commit in flight (running, or failed
// and waiting to be written again).
func (p *partition) hasInflight() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inflight != nil
}

// position returns the last source sequence whose effects p holds,
// committed or not.
func (p *partition) position(examined uint64) uint64 {
	pos := max(p.sourceSeq.Load(), p.covered)
	if p.attached {
		pos = max(pos, examined)
	}
	return pos
}

// seal makes buf the commit in flight, up to source position target, and
// starts a fresh buf. p must have no commit in flight.
func (p *partition) seal(target uint64) *commitJob {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inflight = &commitJob{part: p, buf: p.buf, keys: p.keys, target: target, epoch: p.sourceEpoch}
	p.buf, p.keys = nil, 0
	p.remark = false
	return p.inflight
}

// setInflight replaces the commit in flight (nil: it ended).
func (p *partition) setInflight(j *commitJob) {
	p.mu.Lock()
	p.inflight = j
	p.mu.Unlock()
}

// bufferedKeys returns the number of keys in buf: the writes not yet in a
// commit.
func (p *partition) bufferedKeys() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.keys
}

// uncommittedKeys returns the number of keys in buf and in the commit in
// flight.
func (p *partition) uncommittedKeys() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.keys
	if p.inflight != nil {
		n += p.inflight.keys
	}
	return n
}

func toMutations(recs []port.Record) []store.Mutation {
	ms := make([]store.Mutation, len(recs))
	for i, r := range recs {
		ms[i] = store.Mutation{Table: r.Table, Key: r.Key, Value: r.Value, Delete: r.Delete}
	}
	return ms
}
