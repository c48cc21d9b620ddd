package manager

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/edgetables/edgetables/manager/port"
	"github.com/edgetables/edgetables/store"
)

// A changelog behind its store.
//
// A partition's store is rebuilt from its changelog when it cannot be
// trusted against it. When the store is ahead of the log (its offset lies
// beyond the log's end, or the log has another epoch: the stream was
// deleted, or restored from an older backup) and the log does not show
// the store's state either (its last commit marker is short of the store's
// source position), a rebuild would go back in time, and the store may be
// the only copy left. What happens then is the operator's choice
// (Config.ChangelogBehind): stop the partition and say so (the default),
// write the store back into the log (reseed), or take the log as it is
// (accept).

// ChangelogBehind is what a node does with a partition whose changelog is
// behind its store.
type ChangelogBehind string

// The choices of Config.ChangelogBehind.
const (
	// ChangelogBehindStop leaves the store as it is and stops the
	// partition: it is not recovered (its recovery is retried with a
	// growing pause, and goes on by itself if the log catches up, e.g.
	// another node re-seeded it) and Readiness names it.
	ChangelogBehindStop ChangelogBehind = "stop"
	// ChangelogBehindReseed writes the store's records back into the log
	// (with tombstones for the keys the log holds and the store does not)
	// and a commit marker with the store's source position, then
	// recovers the partition as usual. Only the partition's active owner
	// does it; a standby waits for it.
	ChangelogBehindReseed ChangelogBehind = "reseed"
	// ChangelogBehindAccept rebuilds the store from the log, dropping
	// what the log lacks: the partition goes back to the log's state.
	ChangelogBehindAccept ChangelogBehind = "accept"
)

// ErrChangelogBehind is returned (wrapped, by the recovery of a
// partition) when the partition's changelog is behind its store and
// Config.ChangelogBehind does not say to go on.
var ErrChangelogBehind = errors.New("edgetables: changelog behind the partition's store")

// behindError is ErrChangelogBehind with what was found; reseed is set when
// the store is to be written back into the log.
type behindError struct {
	msg    string
	reseed bool
}

func (e *behindError) Error() string { return e.msg }
func (e *behindError) Unwrap() error { return ErrChangelogBehind }

// reseedChunk is the most store records written back per changelog
// append when the changelog takes any number (at least once).
const reseedChunk = 10000

// behind returns openTrusted's check of a store ahead of partition id's
// log: it decides, by Config.ChangelogBehind, whether the store is rebuilt
// from the log (nil), or kept and the partition stopped or re-seeded (a
// *behindError). active tells an active's recovery from a standby's.
func (r *recovery) behind(ctx context.Context, p *partition, active bool) func(store.Store, store.Offsets, string) error {
	m := r.m
	return func(st store.Store, offs store.Offsets, why string) error {
		if offs.Source == 0 {
			return nil // nothing processed: a rebuild loses nothing
		}
		lctx, cancel := context.WithTimeout(ctx, commitTimeout)
		marker, seq, found, err := m.cfg.Changelog.LastCommit(lctx, p.id)
		cancel()
		if err != nil {
			return fmt.Errorf("store ahead of its changelog (%s): read the log's last commit marker: %w", why, err)
		}
		if found && marker.SourceSeq >= offs.Source &&
			(marker.SourceEpoch == "" || offs.SourceEpoch == "" || marker.SourceEpoch == offs.SourceEpoch) {
			return nil // the log moved on past the store (another owner re-seeded it, or wrote since)
		}
		logPos := "none"
		if found {
			logPos = fmt.Sprintf("source position %d (sequence %d, node %s)", marker.SourceSeq, seq, marker.Node)
		}
		mode := m.cfg.ChangelogBehind
		detail := fmt.Sprintf("changelog behind its store (%s): the store holds source position %d, the log's last commit marker: %s",
			why, offs.Source, logPos)
		if p.behind.Load() == nil {
			m.counters.changelogBehind.Add(1)
		}
		attrs := []any{"partition", p.id, "tables", m.tableNames(), "store_changelog_offset", offs.Changelog, "store_epoch", offs.Epoch,
			"store_source_seq", offs.Source, "log_last_commit", logPos, "why", why, "changelog_behind", string(mode)}
		switch {
		case mode == ChangelogBehindAccept:
			p.behind.Store(nil)
			m.log.Warn("changelog behind its store: accepting the log as it is (changelog-behind accept); the store is rebuilt from it and its newer state is dropped", attrs...)
			return nil
		case mode == ChangelogBehindReseed && active:
			m.log.Warn("changelog behind its store: writing the store back into the log (changelog-behind reseed)", attrs...)
			return &behindError{msg: detail, reseed: true}
		}
		reason := detail + "; the partition is stopped, its store kept: restart with --changelog-behind reseed (write the store back into the log) or accept (rebuild the store from the log)"
		if active && mode == "" || mode == ChangelogBehindStop {
			if old := p.behind.Swap(&reason); old == nil {
				m.log.Error("changelog behind its store: the partition is stopped and its store kept, rather than rebuilt from an older log; "+
					"restart the node with --changelog-behind reseed or accept", attrs...)
			}
		} else if old := p.behind.Swap(&reason); old == nil {
			m.log.Error("changelog behind this standby's store: waiting for the partition's owner to re-seed it", attrs...)
		}
		return &behindError{msg: detail}
	}
}

// reseed writes the records of partition p's store back into its log,
// which is behind it (state): tombstones first for the keys the log holds
// and the store does not, then every record of the store's tables (global
// tables excepted), in appends of at most a commit's records. Each append
// but the last carries a commit marker with the log's own last position,
// so that a crash midway leaves a log that still shows itself behind; the
// last one carries the store's source position. The store then records
// the log's new end and epoch, and p is set up from it.
func (r *recovery) reseed(ctx context.Context, p *partition, state port.LogState, gen uint64) error {
	m := r.m
	st, err := m.cfg.Stores.Open(p.id)
	if err != nil {
		return fmt.Errorf("reseed: open store: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = st.Close()
		}
	}()
	offs, err := st.Offsets()
	if err != nil {
		return fmt.Errorf("reseed: store offsets: %w", err)
	}
	var base port.CommitMarker // the position intermediate markers carry
	if lm, _, found, err := m.cfg.Changelog.LastCommit(ctx, p.id); err != nil {
		return fmt.Errorf("reseed: %w", err)
	} else if found {
		base = lm
	}
	chunk := reseedChunk
	if m.cfg.CommitCapacity > 0 {
		chunk = m.cfg.CommitCapacity
	}
	expect, written := state.Last, 0
	var pending []port.Record
	flush := func(final bool) error {
		if len(pending) == 0 && !final {
			return nil
		}
		marker := port.CommitMarker{SourceSeq: base.SourceSeq, SourceEpoch: base.SourceEpoch, Node: m.cfg.Node, Generation: gen}
		if final {
			marker = port.CommitMarker{SourceSeq: offs.Source, SourceEpoch: offs.SourceEpoch, Node: m.cfg.Node, Generation: gen}
		}
		actx, cancel := context.WithTimeout(ctx, commitTimeout)
		last, err := m.cfg.Changelog.Append(actx, p.id, expect, pending, marker)
		cancel()
		if err != nil {
			return fmt.Errorf("reseed: append %d records after %d: %w", len(pending), expect, err)
		}
		expect, written, pending = last, written+len(pending), pending[:0]
		return nil
	}
	tombstones := 0
	if state.Last > 0 && state.Last >= state.First {
		err := m.cfg.Changelog.Replay(ctx, p.id, state.First, state.Last, m.cfg.RecoveryBufferSize, func(es []port.Entry) error {
			for _, e := range es {
				t, known := m.tables[e.Record.Table]
				if e.Commit != nil || e.Record.Delete || !known || isGlobalTable(t) {
					continue
				}
				if _, found, err := st.Get(e.Record.Table, e.Record.Key); err != nil {
					return err
				} else if !found {
					pending = append(pending, port.Record{Table: e.Record.Table, Key: e.Record.Key, Delete: true})
					tombstones++
				}
			}
			if len(pending) >= chunk {
				return flush(false)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("reseed: read the log: %w", err)
		}
	}
	for _, t := range m.Tables() {
		if isGlobalTable(t) {
			continue
		}
		var ferr error
		err := st.Scan(t.Name(), nil, nil, func(k, v []byte) bool {
			pending = append(pending, port.Record{Table: t.Name(), Key: bytes.Clone(k), Value: bytes.Clone(v)})
			if len(pending) >= chunk {
				ferr = flush(false)
			}
			return ferr == nil
		})
		if err = errors.Join(err, ferr); err != nil {
			return fmt.Errorf("reseed: table %s: %w", t.Name(), err)
		}
	}
	if err := flush(true); err != nil {
		return err
	}
	offs = store.Offsets{Changelog: expect, Source: offs.Source, Epoch: state.Epoch, SourceEpoch: offs.SourceEpoch}
	if err := st.Apply(store.Batch{Offsets: offs}); err != nil {
		return fmt.Errorf("reseed: persist offsets: %w", err)
	}
	ok = true
	if p.store != nil {
		_ = p.store.Close()
	}
	p.store, p.epoch = st, state.Epoch
	p.applied.Store(expect)
	p.sourceSeq.Store(offs.Source)
	p.sourceEpoch, p.logSource, p.lastPersist = offs.SourceEpoch, offs.Source, offs.Source
	p.behind.Store(nil)
	m.log.Warn("changelog re-seeded from the store", "partition", p.id, "records", written-tombstones, "tombstones", tombstones,
		"changelog_last_seq", expect, "source_seq", offs.Source)
	return nil
}
