package manager

import (
	"bytes"
	"context"
	"fmt"
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

// closeWindows closes p's windows whose end plus Expires the clock (or the
// partition's horizon) has reached: for each, OnWindowClose and a
// tombstone, buffered in p with the callback's writes; then the new
// horizon. The store is scanned only when the earliest closing time is due
// or unknown (after an activation: windows restored by recovery are found
// here).
func (t *WindowedTable[K, V]) closeWindows(ctx context.Context, p *partition) {
	log := t.m.log.With("table", t.cfg.Name, "partition", p.id)
	horizon, err := t.horizon(p.get)
	if err != nil {
		log.Error("closing windows: cannot read the closing horizon; windows stay open", "err", err)
		return
	}
	now := later(t.now(), horizon)
	if due, ok := t.dueAt(p); ok && now.Before(due) {
		return
	}
	next := time.Unix(1<<62, 0) // far future: nothing to close
	var due [][]byte
	seen := map[string]bool{}
	consider := func(sk []byte) bool {
		_, start, ok := splitWindowKey(sk)
		if !ok || seen[string(sk)] {
			return true
		}
		c := t.ws.closeAt(t.ws.window(start))
		if !now.Before(c) {
			seen[string(sk)] = true
			due = append(due, bytes.Clone(sk))
			return len(due) < maxClosesPerPass
		}
		if c.Before(next) {
			next = c
		}
		return true
	}
	complete := true
	err = p.store.Scan(t.cfg.Name, nil, nil, func(k, _ []byte) bool {
		complete = consider(k)
		return complete
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
			if complete && !w.delete {
				complete = consider([]byte(k))
			}
		}
	}
	if !complete {
		next = now // more to close: go on at the next pass
	}
	closed := 0
	for _, sk := range due {
		if lim := t.m.cfg.MaxCommitRecords; (lim > 0 && p.bufferedKeys() >= lim/2) || ctx.Err() != nil {
			next = now
			break
		}
		ok, err := t.closeOne(ctx, p, sk, now)
		if err != nil {
			kb, start, _ := splitWindowKey(sk)
			log.Error("window not closed; retrying", "key", string(kb), "window", t.ws.window(start).String(),
				"retry_in", closeRetry, "err", err)
			if r := now.Add(closeRetry); r.Before(next) {
				next = r
			}
			continue
		}
		if ok {
			closed++
		}
	}
	if closed > 0 {
		p.merge([]write{{table: t.cfg.Name, key: string(horizonKey), value: encodeHorizon(now)}})
		log.Debug("windows closed", "count", closed, "horizon", now)
	}
	t.setDue(p, next)
}

// closeOne calls OnWindowClose for the window stored at sk and buffers its
// writes and the window's tombstone in p. It reports whether the window
// was there to close.
func (t *WindowedTable[K, V]) closeOne(ctx context.Context, p *partition, sk []byte, now time.Time) (bool, error) {
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
