package manager

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

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
		if p.State() != StateActive {
			continue
		}
		for _, c := range closers {
			c.closeWindows(ctx, p)
		}
		if lim := m.cfg.MaxCommitRecords; lim > 0 && p.bufferedKeys() >= lim {
			m.full = true
		}
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

// noteWindow lowers p's earliest known closing time to at.
func (t *WindowedTable[K, V]) noteWindow(p *partition, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	mk, ok := t.marks[p.id]
	if ok && mk.p == p && mk.activations == p.activations.Load() && at.Before(mk.at) {
		mk.at = at
		t.marks[p.id] = mk
	}
}

// dueAt returns p's earliest known closing time, and false when it is not
// known (p was activated since the last pass).
func (t *WindowedTable[K, V]) dueAt(p *partition) (time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	mk, ok := t.marks[p.id]
	if !ok || mk.p != p || mk.activations != p.activations.Load() {
		return time.Time{}, false
	}
	return mk.at, true
}

func (t *WindowedTable[K, V]) setDue(p *partition, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.marks[p.id] = closeMark{p: p, activations: p.activations.Load(), at: at}
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

// sortDue sorts ws by closing time, then store key: the order in which
// windows close and closingState.through advances.
func sortDue(ws []dueWindow) {
	slices.SortFunc(ws, func(a, b dueWindow) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return bytes.Compare(a.sk, b.sk)
	})
}

// closeWindows closes p's windows whose end plus Expires the clock (or the
// partition's horizon) has reached, in order of closing time: for each,
// OnWindowClose and a tombstone, buffered in p with the callback's writes;
// then the new closing state. The store is scanned only when the earliest
// closing time is due or unknown (after an activation: windows restored by
// recovery are found here).
//
// A closed window that the closing state already covers is a remnant: its
// tombstone expired from the changelog before this store replayed it. It is
// removed without OnWindowClose, which ran when it first closed. The
// closing state advances over the windows closed in order; a window whose
// OnWindowClose fails holds it back (until it closes), and the windows
// closed after it get permanent tombstones, since no record vouches for
// them yet.
func (t *WindowedTable[K, V]) closeWindows(ctx context.Context, p *partition) {
	log := t.m.log.With("table", t.cfg.Name, "partition", p.id)
	cs, err := t.closing(p.get)
	if err != nil {
		log.Error("closing windows: cannot read the closing horizon; windows stay open", "err", err)
		return
	}
	now := later(t.now(), cs.horizon)
	if due, ok := t.dueAt(p); ok && now.Before(due) {
		return
	}
	next := time.Unix(1<<62, 0) // far future: nothing to close
	var due []dueWindow
	truncated := false // due windows were left out of due
	consider := func(sk []byte) {
		_, start, ok := splitWindowKey(sk)
		if !ok {
			return
		}
		c := t.ws.closeAt(t.ws.window(start))
		if !now.Before(c) {
			due = append(due, dueWindow{at: c, sk: bytes.Clone(sk)})
			if len(due) >= 2*maxClosesPerPass { // keep the earliest
				sortDue(due)
				due, truncated = due[:maxClosesPerPass], true
			}
			return
		}
		if c.Before(next) {
			next = c
		}
	}
	err = p.store.Scan(t.cfg.Name, nil, nil, func(k, _ []byte) bool {
		consider(k)
		return true
	})
	if err != nil {
		log.Error("closing windows: store scan failed; retrying at the next commit", "err", err)
		return
	}
	// Windows written since the last commit, and those of the commit in
	// flight, are not in the store yet.
	bufs := []map[string]pending{p.buf[t.cfg.Name]}
	if j := p.inflight; j != nil {
		bufs = append(bufs, j.buf[t.cfg.Name])
	}
	for _, b := range bufs {
		for k, w := range b {
			if !w.delete {
				consider([]byte(k))
			}
		}
	}
	sortDue(due)
	// A window both stored and written since the last commit is there twice.
	due = slices.CompactFunc(due, func(a, b dueWindow) bool { return bytes.Equal(a.sk, b.sk) })
	if len(due) > maxClosesPerPass {
		due, truncated = due[:maxClosesPerPass], true
	}
	if truncated {
		next = now // more to close: go on at the next pass
	}
	ttl := t.cfg.TombstoneTTL
	if ttl == 0 {
		ttl = DefaultTombstoneTTL
	}
	var (
		closed, removed int
		inOrder         = true // every window of due so far is closed
		last            *dueWindow
		all             = true // the loop went through due
	)
	for i := range due {
		d := &due[i]
		if lim := t.m.cfg.MaxCommitRecords; (lim > 0 && p.bufferedKeys() >= lim/2) || ctx.Err() != nil {
			next, all = now, false
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
				inOrder = false
				continue
			}
			if ok {
				removed++
			}
		} else {
			ok, err := t.closeOne(ctx, p, d.sk, now, tombTTL)
			if err != nil {
				kb, start, _ := splitWindowKey(d.sk)
				log.Error("window not closed; retrying", "key", string(kb), "window", t.ws.window(start).String(),
					"retry_in", closeRetry, "err", err)
				if r := now.Add(closeRetry); r.Before(next) {
					next = r
				}
				inOrder = false
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
	if closed+removed > 0 {
		ncs := closingState{horizon: now, through: cs.through, throughKey: cs.throughKey, complete: cs.complete}
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
	t.setDue(p, next)
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
	w := t.ws.window(start)
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
func (t *WindowedTable[K, V]) callClose(e *Event, k K, w Window, v V) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("OnWindowClose panicked: %v", r)
		}
	}()
	return t.cfg.OnWindowClose(e, k, w, v)
}
