package tabletest

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/edgetables/edgetables/manager/port"
)

// The manager's ports (port.Changelog, Source, GlobalLog, DeadLetters)
// held in memory. They outlive the managers a Driver starts, as JetStream
// streams outlive a node: a crash loses a manager and its stores, never
// these.

// epoch names the streams of every driver: they are never created again.
const epoch = "tabletest"

// memLog is an ordered log of entries numbered from 1, never compacted.
// grown is closed and replaced at every append, for followers.
type memLog struct {
	entries []port.Entry
	grown   chan struct{}
}

func (l *memLog) append(e port.Entry) uint64 {
	e.Seq = uint64(len(l.entries)) + 1
	l.entries = append(l.entries, e)
	return e.Seq
}

func (l *memLog) state() port.LogState {
	if len(l.entries) == 0 {
		return port.LogState{Epoch: epoch}
	}
	return port.LogState{First: 1, Last: uint64(len(l.entries)), Epoch: epoch}
}

// slice returns the entries from seq from to until (inclusive).
func (l *memLog) slice(from, until uint64) []port.Entry {
	from = max(from, 1)
	until = min(until, uint64(len(l.entries)))
	if from > until {
		return nil
	}
	return l.entries[from-1 : until]
}

func (l *memLog) signal() {
	if l.grown != nil {
		close(l.grown)
	}
	l.grown = make(chan struct{})
}

// replay passes es to fn in batches of at most size.
func replay(es []port.Entry, size int, fn func([]port.Entry) error) error {
	size = max(size, 1)
	for len(es) > 0 {
		n := min(size, len(es))
		if err := fn(es[:n:n]); err != nil {
			return err
		}
		es = es[n:]
	}
	return nil
}

// follow replays from seq from on, then waits for growth until ctx ends.
func follow(ctx context.Context, mu *sync.Mutex, l *memLog, from uint64, size int, fn func([]port.Entry) error) error {
	for {
		mu.Lock()
		es := l.slice(from, uint64(len(l.entries)))
		if l.grown == nil {
			l.grown = make(chan struct{})
		}
		grown := l.grown
		mu.Unlock()
		if err := replay(es, size, fn); err != nil {
			return err
		}
		from += uint64(len(es))
		select {
		case <-ctx.Done():
			return nil
		case <-grown:
		}
	}
}

func cloneRecord(r port.Record) port.Record {
	r.Key, r.Value = bytes.Clone(r.Key), bytes.Clone(r.Value)
	return r
}

// changelog implements port.Changelog.
type changelog struct {
	mu    sync.Mutex
	parts []memLog
	// marker is the index+1 of each partition's last commit marker.
	marker []int
}

var _ port.Changelog = (*changelog)(nil)

func newChangelog(partitions int) *changelog {
	return &changelog{parts: make([]memLog, partitions), marker: make([]int, partitions)}
}

func (c *changelog) part(p int) (*memLog, error) {
	if p < 0 || p >= len(c.parts) {
		return nil, fmt.Errorf("tabletest changelog: partition %d out of range [0,%d)", p, len(c.parts))
	}
	return &c.parts[p], nil
}

func (c *changelog) Subjects(table string) []string {
	return []string{"tabletest.changelog.*." + table}
}

func (c *changelog) State(_ context.Context, p int) (port.LogState, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l, err := c.part(p)
	if err != nil {
		return port.LogState{}, err
	}
	return l.state(), nil
}

func (c *changelog) Append(_ context.Context, p int, expectLast uint64, recs []port.Record, marker port.CommitMarker) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l, err := c.part(p)
	if err != nil {
		return 0, err
	}
	if last := uint64(len(l.entries)); last != expectLast {
		return 0, fmt.Errorf("tabletest changelog partition %d ends at %d, not %d: %w", p, last, expectLast, port.ErrFenced)
	}
	for _, r := range recs {
		l.append(port.Entry{Record: cloneRecord(r)})
	}
	mk := marker
	last := l.append(port.Entry{Commit: &mk})
	c.marker[p] = int(last)
	l.signal()
	return last, nil
}

func (c *changelog) LastCommit(_ context.Context, p int) (port.CommitMarker, uint64, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l, err := c.part(p)
	if err != nil || c.marker[p] == 0 {
		return port.CommitMarker{}, 0, false, err
	}
	e := l.entries[c.marker[p]-1]
	return *e.Commit, e.Seq, true, nil
}

func (c *changelog) Replay(ctx context.Context, p int, from, until uint64, batchSize int, fn func([]port.Entry) error) error {
	c.mu.Lock()
	l, err := c.part(p)
	var es []port.Entry
	if err == nil {
		es = l.slice(from, until)
	}
	c.mu.Unlock()
	if err != nil {
		return err
	}
	return replay(es, batchSize, fn)
}

func (c *changelog) FirstStored(_ context.Context, p int, seq uint64) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l, err := c.part(p)
	if err != nil || seq > uint64(len(l.entries)) {
		return 0, err
	}
	return max(seq, 1), nil
}

func (c *changelog) Follow(ctx context.Context, p int, from uint64, batchSize int, fn func([]port.Entry) error) error {
	l, err := c.part(p)
	if err != nil {
		return err
	}
	return follow(ctx, &c.mu, l, from, batchSize, fn)
}

// records returns table's records in partition then log order.
func (c *changelog) records(table string) []port.Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []port.Record
	for i := range c.parts {
		for _, e := range c.parts[i].entries {
			if e.Commit == nil && e.Record.Table == table {
				out = append(out, cloneRecord(e.Record))
			}
		}
	}
	return out
}

// source implements port.Source: it holds msgs[head:], numbered from
// first on.
type source struct {
	mu       sync.Mutex
	subjects []string
	msgs     []port.SourceMessage
	head     int
	first    uint64 // seq of msgs[head], or last+1 when empty
	last     uint64
	acked    uint64
}

var _ port.Source = (*source)(nil)

func newSource(subjects []string) *source { return &source{subjects: subjects, first: 1} }

// add appends msgs, numbering them; those without a time get now.
func (s *source) add(msgs []Message, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.head > 0 && s.head >= len(s.msgs)/2 {
		// Reuse the array: move what is held to its start.
		n := copy(s.msgs, s.msgs[s.head:])
		clear(s.msgs[n:])
		s.msgs, s.head = s.msgs[:n], 0
	}
	for _, m := range msgs {
		s.last++
		t := m.Time
		if t.IsZero() {
			t = now
		}
		s.msgs = append(s.msgs, port.SourceMessage{Seq: s.last, Subject: m.Subject, Header: m.Header, Data: m.Data, Time: t})
	}
}

// held returns the messages held.
func (s *source) held() []port.SourceMessage { return s.msgs[s.head:] }

func (s *source) Subjects() []string { return s.subjects }

func (s *source) Open(_ context.Context, from uint64) (port.SourceReader, error) {
	return &reader{s: s, next: max(from, 1)}, nil
}

func (s *source) Trim(_ context.Context, seq uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq <= s.first {
		return nil
	}
	n := int(min(seq-s.first, uint64(len(s.held()))))
	clear(s.msgs[s.head : s.head+n]) // for the garbage collector
	s.head += n
	s.first += uint64(n)
	return nil
}

func (s *source) State(context.Context) (port.SourceState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last == 0 {
		return port.SourceState{Epoch: epoch}, nil
	}
	return port.SourceState{First: s.first, Last: s.last, Epoch: epoch}, nil
}

// reader implements port.SourceReader; Next never waits.
type reader struct {
	s    *source
	next uint64
}

func (r *reader) Next(_ context.Context, n int, _ time.Duration) ([]port.SourceMessage, error) {
	s := r.s
	s.mu.Lock()
	defer s.mu.Unlock()
	r.next = max(r.next, s.first)
	held := s.held()
	i := r.next - s.first
	if i >= uint64(len(held)) {
		return nil, nil
	}
	msgs := held[i:min(i+uint64(max(n, 1)), uint64(len(held)))]
	r.next += uint64(len(msgs))
	return append([]port.SourceMessage(nil), msgs...), nil
}

func (r *reader) Ack(_ context.Context, seq uint64) error {
	r.s.mu.Lock()
	r.s.acked = max(r.s.acked, seq)
	r.s.mu.Unlock()
	return nil
}

func (r *reader) Close() error { return nil }

// globalLog implements port.GlobalLog.
type globalLog struct {
	mu   sync.Mutex
	log  memLog
	last map[string]uint64 // table NUL key → seq of its last record
}

var _ port.GlobalLog = (*globalLog)(nil)

func newGlobalLog() *globalLog { return &globalLog{last: make(map[string]uint64)} }

func (g *globalLog) Subjects(table string) []string { return []string{"tabletest.global." + table} }

func (g *globalLog) State(context.Context) (port.LogState, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.log.state(), nil
}

func (g *globalLog) Put(_ context.Context, rec port.Record, expect *uint64) (uint64, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	k := rec.Table + "\x00" + string(rec.Key)
	if expect != nil && g.last[k] != *expect {
		return 0, fmt.Errorf("tabletest global log: key %q of table %s is at %d, not %d: %w",
			rec.Key, rec.Table, g.last[k], *expect, port.ErrConflict)
	}
	seq := g.log.append(port.Entry{Record: cloneRecord(rec)})
	g.last[k] = seq
	g.log.signal()
	return seq, nil
}

func (g *globalLog) Replay(_ context.Context, from, until uint64, batchSize int, fn func([]port.Entry) error) error {
	g.mu.Lock()
	es := g.log.slice(from, until)
	g.mu.Unlock()
	return replay(es, batchSize, fn)
}

func (g *globalLog) Follow(ctx context.Context, from uint64, batchSize int, fn func([]port.Entry) error) error {
	return follow(ctx, &g.mu, &g.log, from, batchSize, fn)
}

// deadLetters implements port.DeadLetterQueue: a dead letter is stored
// when it is enqueued.
type deadLetters struct {
	mu  sync.Mutex
	dls []port.DeadLetter
}

var _ port.DeadLetterQueue = (*deadLetters)(nil)

func (d *deadLetters) Send(_ context.Context, dl port.DeadLetter) error {
	d.mu.Lock()
	d.dls = append(d.dls, dl)
	d.mu.Unlock()
	return nil
}

func (d *deadLetters) Enqueue(ctx context.Context, dl port.DeadLetter) error {
	return d.Send(ctx, dl)
}

func (d *deadLetters) Flush(context.Context) error { return nil }

func (d *deadLetters) all() []port.DeadLetter {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]port.DeadLetter(nil), d.dls...)
}
