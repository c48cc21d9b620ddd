package manager

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/edgetables/edgetables/manager/status"
	"github.com/edgetables/edgetables/manager/window"
	"github.com/edgetables/edgetables/store"
)

// maxClosesPerPass bounds the windows one partition closes in one pass, and
// so the tombstones one commit carries; the rest close at the next pass.
const maxClosesPerPass = 10000

// closeRetry is the pause before a window whose OnWindowClose failed is
// tried again.
const closeRetry = time.Second

// windowCloser is implemented by tables whose entries close with time.
type windowCloser interface {
	closeWindows(ctx context.Context, p *partition)
	// retainMarks forgets what the table knows of partitions that keep
	// reports false for.
	retainMarks(keep func(p *partition) bool)
}

// hiddenKeys is implemented by tables that keep keys of their own in the
// store (a windowed table's closing horizon): listings and counts skip them.
type hiddenKeys interface {
	hiddenKey(k []byte) bool
	// hiddenIn counts the hidden keys st holds.
	hiddenIn(st store.Store) (int, error)
}

// closeWindows closes the due windows of every windowed table in every
// active partition. It runs on the processing goroutine, before a commit:
// the tombstones it buffers are committed like any write.
func (m *TableManager) closeWindows(ctx context.Context) {
	var closers []windowCloser
	for _, t := range m.Tables() {
		if c, ok := t.(windowCloser); ok {
			closers = append(closers, c)
		}
	}
	if len(closers) == 0 {
		return
	}
	for _, p := range m.assigned() {
		if p.State() != status.StateActive {
			continue
		}
		for _, c := range closers {
			c.closeWindows(ctx, p)
		}
		if lim := m.cfg.MaxCommitRecords; lim > 0 && p.bufferedKeys() >= lim {
			m.full = true
		}
	}
	active := func(p *partition) bool { return p.State() == status.StateActive && m.partition(p.id) == p }
	for _, c := range closers {
		c.retainMarks(active)
	}
}

// hiddenCount returns how many hidden keys of table c st holds.
func hiddenCount(c Collection, st store.Store) (int, error) {
	h, ok := c.(hiddenKeys)
	if !ok {
		return 0, nil
	}
	return h.hiddenIn(st)
}

// mark returns what t knows of p's windows, with the time of the next
// pass and the horizon; nil when it knows nothing (p was activated since
// the last pass).
func (t *WindowedTable[K, V]) mark(p *partition) (mk *closeMark, due, horizon time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	mk = t.marks[p.id]
	if mk == nil || mk.p != p || mk.activations != p.activations.Load() {
		return nil, time.Time{}, time.Time{}
	}
	return mk, mk.at, mk.cs.horizon
}

// noteWindow lists the window just created at sk, closing at at, in p's
// index, if t has one.
func (t *WindowedTable[K, V]) noteWindow(p *partition, sk []byte, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	mk := t.marks[p.id]
	if mk == nil || mk.p != p || mk.activations != p.activations.Load() {
		return // listed by the scan of the next pass
	}
	mk.idx.add(sk)
	if at.Before(mk.at) {
		mk.at = at
	}
}

// retainMarks implements windowCloser. keep is called without t.mu held.
func (t *WindowedTable[K, V]) retainMarks(keep func(p *partition) bool) {
	t.mu.Lock()
	marks := make([]*closeMark, 0, len(t.marks))
	for _, mk := range t.marks {
		marks = append(marks, mk)
	}
	t.mu.Unlock()
	for _, mk := range marks {
		if keep(mk.p) {
			continue
		}
		t.mu.Lock()
		if t.marks[mk.p.id] == mk {
			delete(t.marks, mk.p.id)
		}
		t.mu.Unlock()
	}
}

// indexWindows lists p's windows: those in the store and those written
// since the last commit (and in the commit in flight), not yet in it.
func (t *WindowedTable[K, V]) indexWindows(p *partition) (*windowIndex, error) {
	idx := newWindowIndex()
	err := p.store.Scan(t.cfg.Name, nil, nil, func(k, _ []byte) bool {
		idx.add(k)
		return true
	})
	if err != nil {
		return nil, err
	}
	bufs := []map[string]pending{p.buf[t.cfg.Name]}
	if j := p.inflight; j != nil {
		bufs = append(bufs, j.buf[t.cfg.Name])
	}
	for _, b := range bufs {
		for k, w := range b {
			if !w.delete {
				idx.add([]byte(k))
			}
		}
	}
	return idx, nil
}

// closingState is what a partition's closing horizon record says, per
// windowed table.
//
// horizon is the clock reading of the last closing pass: writes to windows
// closing at or before it are refused. through (with throughKey) says how
// far closing is complete: every window whose (closing time, store key) is
// at or before (through, throughKey) has been closed: OnWindowClose called,
// tombstone written, in the commit that wrote the record or before.
// throughKey nil means every key. Records written before tombstones could
// expire hold only the horizon (8 bytes); they vouch for nothing, which is
// right since their tombstones are permanent.
type closingState struct {
	horizon    time.Time
	through    time.Time
	throughKey []byte
	complete   bool // through is set
}

// covers reports whether the window closing at at, stored at sk, is one
// that c says was closed.
func (c closingState) covers(at time.Time, sk []byte) bool {
	if !c.complete || at.After(c.through) {
		return false
	}
	return at.Before(c.through) || c.throughKey == nil || bytes.Compare(sk, c.throughKey) <= 0
}

// encode returns the record: horizon, through (8 bytes each, Unix
// nanoseconds, big-endian), then throughKey; only the horizon when
// through is not set.
func (c closingState) encode() []byte {
	b := binary.BigEndian.AppendUint64(nil, uint64(c.horizon.UnixNano()))
	if !c.complete {
		return b
	}
	b = binary.BigEndian.AppendUint64(b, uint64(c.through.UnixNano()))
	return append(b, c.throughKey...)
}

func decodeClosing(table string, b []byte) (closingState, error) {
	if len(b) != 8 && len(b) < 16 || len(b) > 16 && len(b) < 16+windowKeyLen {
		return closingState{}, fmt.Errorf("table %s: closing horizon of %d bytes, want 8, 16 or more than %d", table, len(b), 16+windowKeyLen-1)
	}
	c := closingState{horizon: time.Unix(0, int64(binary.BigEndian.Uint64(b))).UTC()}
	if len(b) >= 16 {
		c.complete = true
		c.through = time.Unix(0, int64(binary.BigEndian.Uint64(b[8:]))).UTC()
		if len(b) > 16 {
			c.throughKey = bytes.Clone(b[16:])
		}
	}
	return c, nil
}

// dueWindow is a window found closed by a pass.
type dueWindow struct {
	at time.Time // closing time
	sk []byte    // store key
}

// closeWindows closes p's windows whose end plus Expires the table's
// closing clock (or the partition's horizon) has reached, in order of
// closing time: for each, OnWindowClose and a tombstone, buffered in p with
// the callback's writes; then the new closing state. A pass with nothing
// due compares the clock with the next closing time and returns; one with
// due windows visits those only (see windowIndex). The first pass after an
// activation scans the store once to list the windows (windows restored by
// recovery are found there).
//
// A closed window that the closing state already covers is a remnant: its
// tombstone expired from the changelog before this store replayed it. It is
// removed without OnWindowClose, which ran when it first closed. The
// closing state advances over the windows closed in order; a window whose
// OnWindowClose fails holds it back (until it closes), and the windows
// closed after it get permanent tombstones, since no record vouches for
// them yet.
func (t *WindowedTable[K, V]) closeWindows(ctx context.Context, p *partition) {
	mk, next, horizon := t.mark(p)
	if mk != nil && later(t.clock.read().now, horizon).Before(next) {
		return
	}
	log := t.m.log.With("table", t.cfg.Name, "partition", p.id)
	cs, err := t.closing(p.get)
	if err != nil {
		log.Error("closing windows: cannot read the closing horizon; windows stay open", "err", err)
		return
	}
	now := later(t.clock.read().now, cs.horizon)
	if mk == nil {
		idx, err := t.indexWindows(p)
		if err != nil {
			log.Error("closing windows: store scan failed; retrying at the next commit", "err", err)
			return
		}
		mk = &closeMark{p: p, activations: p.activations.Load(), idx: idx}
	}
	// Installed before OnWindowClose runs: windows it creates are listed.
	t.mu.Lock()
	mk.cs = cs
	t.marks[p.id] = mk
	due, truncated := mk.idx.take(now, func(s int64) time.Time { return closeAt(t.ws, windowAt(t.ws, s)) }, maxClosesPerPass)
	t.mu.Unlock()

	ttl := t.cfg.TombstoneTTL
	if ttl == 0 {
		ttl = DefaultTombstoneTTL
	}
	var (
		closed, removed int
		inOrder         = true // every window of due so far is closed
		last            *dueWindow
		all             = true // the loop went through due
		keep            []dueWindow
		retry           time.Time // the earliest retry of a failed close
	)
	for i := range due {
		d := &due[i]
		if lim := t.m.cfg.MaxCommitRecords; (lim > 0 && p.bufferedKeys() >= lim/2) || ctx.Err() != nil {
			keep, all = append(keep, due[i:]...), false
			break
		}
		tombTTL := time.Duration(0)
		if inOrder && ttl > 0 {
			tombTTL = ttl
		}
		if cs.covers(d.at, d.sk) {
			ok, err := t.removeRemnant(p, d.sk, tombTTL)
			if err != nil {
				log.Error("closed window left by an expired tombstone not removed; retrying", "err", err)
				keep, inOrder = append(keep, *d), false
				continue
			}
			if ok {
				removed++
			}
		} else {
			ok, err := t.closeOne(ctx, p, d.sk, now, tombTTL)
			if err != nil {
				kb, start, _ := splitWindowKey(d.sk)
				log.Error("window not closed; retrying", "key", string(kb), "window", windowAt(t.ws, start).String(),
					"retry_in", closeRetry, "err", err)
				if r := now.Add(closeRetry); retry.IsZero() || r.Before(retry) {
					retry = r
				}
				keep, inOrder = append(keep, *d), false
				continue
			}
			if ok {
				closed++
			}
		}
		if inOrder {
			last = d
		}
	}
	ncs := cs
	if closed+removed > 0 {
		ncs = closingState{horizon: now, through: cs.through, throughKey: cs.throughKey, complete: cs.complete}
		switch {
		case inOrder && all && !truncated:
			// Every window closing at or before now is closed, and
			// later writes to them are refused.
			ncs.through, ncs.throughKey, ncs.complete = now, nil, true
		case last != nil && !cs.covers(last.at, last.sk):
			ncs.through, ncs.throughKey, ncs.complete = last.at, last.sk, true
		}
		p.merge([]write{{table: t.cfg.Name, key: string(horizonKey), value: ncs.encode()}})
		if removed > 0 {
			log.Info("removed closed windows whose tombstones expired from the changelog before this store read them; OnWindowClose ran when they closed",
				"count", removed)
		}
		log.Debug("windows closed", "count", closed, "horizon", now, "closed_through", ncs.through)
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	for _, d := range keep {
		mk.idx.add(d.sk)
	}
	mk.cs = ncs
	// The next pass is due at the first closing time not reached (the
	// windows kept, due already, are tried again then, or at their retry).
	mk.at = time.Unix(1<<62, 0) // far future: nothing to close
	for _, s := range mk.idx.starts {
		if at := closeAt(t.ws, windowAt(t.ws, s)); now.Before(at) {
			mk.at = at
			break
		}
	}
	switch {
	case truncated || !all:
		mk.at = now // more to close: go on at the next pass
	case !retry.IsZero() && retry.Before(mk.at):
		mk.at = retry
	}
}

// removeRemnant buffers the tombstone of the window stored at sk, which
// closed before (OnWindowClose is not called). It reports whether the
// window was there.
func (t *WindowedTable[K, V]) removeRemnant(p *partition, sk []byte, ttl time.Duration) (bool, error) {
	_, found, err := p.get(t.cfg.Name, sk)
	if err != nil || !found {
		return false, err
	}
	p.merge([]write{{table: t.cfg.Name, key: string(sk), delete: true, ttl: ttl}})
	return true, nil
}

// closeOne calls OnWindowClose for the window stored at sk and buffers its
// writes and the window's tombstone (with ttl, 0: permanent) in p. It
// reports whether the window was there to close.
func (t *WindowedTable[K, V]) closeOne(ctx context.Context, p *partition, sk []byte, now time.Time, ttl time.Duration) (bool, error) {
	b, found, err := p.get(t.cfg.Name, sk)
	if err != nil || !found {
		return false, err
	}
	kb, start, _ := splitWindowKey(sk)
	w := windowAt(t.ws, start)
	e := &Event{Key: kb, Partition: p.id, Time: now, ctx: ctx, msg: &message{}, part: p}
	if t.cfg.OnWindowClose != nil {
		k, err := t.cfg.Keys.Decode(kb)
		if err != nil {
			return false, fmt.Errorf("decode key: %w", err)
		}
		v, err := t.decodeValue(b)
		if err != nil {
			return false, err
		}
		if err := t.callClose(e, k, w, v); err != nil {
			return false, err
		}
	}
	if err := e.putStored(t.cfg.Name, sk, nil, true); err != nil {
		return false, err
	}
	e.writes[len(e.writes)-1].ttl = ttl
	p.merge(e.writes)
	return true, nil
}

// callClose calls OnWindowClose, turning a panic into an error.
func (t *WindowedTable[K, V]) callClose(e *Event, k K, w window.Window, v V) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("OnWindowClose panicked: %v", r)
		}
	}()
	return t.cfg.OnWindowClose(e, k, w, v)
}
