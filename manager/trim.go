package manager

import (
	"context"
	"fmt"
	"time"
)

// trimEvery is how often committed events are removed from the source.
const trimEvery = time.Second

// trimTimeout bounds one trim: the reads of every partition's last commit
// marker and the purge.
const trimTimeout = 5 * time.Second

// The source trim.
//
// A source event may be removed only once every partition has committed
// past it. What a node holds in memory does not say so: a partition's
// position there may be ahead of its changelog (a position advanced by a
// node whose reader failed, or that lost the partition without knowing
// it), and the partition's owner may be moving. The trim therefore goes by
// the changelogs: each partition's last commit marker, as its stream's
// leader holds it, is what any next owner resumes from. Events at or below
// the lowest of them are committed everywhere, whoever owns what.

// runTrim removes committed events from the source every trimEvery until
// ctx ends: alone always, in a cluster while this node leads the group
// (any node could; one is enough). It runs on its own goroutine, so that a
// source or changelog electing a leader never holds up processing.
func (m *TableManager) runTrim(ctx context.Context) {
	if m.cfg.KeepSource {
		return
	}
	log := m.log.With("component", "trim")
	tick := time.NewTicker(trimEvery)
	defer tick.Stop()
	var failing bool
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if m.cfg.Coordinator != nil && !m.leading.Load() {
			continue
		}
		tctx, cancel := context.WithTimeout(ctx, trimTimeout)
		floor, err := m.trimSource(tctx)
		cancel()
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			failing = true
			log.Warn("source trim failed; committed events stay in the source until it works again", "err", err)
		case err == nil && failing:
			failing = false
			log.Info("source trim works again", "below_seq", floor+1)
		}
	}
}

// trimSource removes the source events at or below the lowest committed
// source position of every partition's changelog (and, with a SourceHold,
// at or below what it has taken), and returns that position. A partition
// whose log holds no commit marker yet (never taken over) stops the trim,
// and so does a marker of another source epoch (the source was created
// again and its owner has not yet moved its position) or a floor beyond
// the source's end (the source lost its tail): their positions do not
// count in the stream as it is now (sourceepoch.go).
func (m *TableManager) trimSource(ctx context.Context) (uint64, error) {
	src, err := m.cfg.Source.State(ctx)
	if err != nil {
		return 0, fmt.Errorf("source state: %w", err)
	}
	floor, ok, err := m.logFloor(ctx, src.Epoch)
	if err != nil || !ok || floor == 0 || floor > src.Last {
		return floor, err
	}
	if h := m.cfg.SourceHold; h != nil {
		taken, known := h.Taken()
		if !known {
			return 0, nil
		}
		floor = min(floor, taken)
		if floor == 0 {
			return 0, nil
		}
	}
	if err := m.cfg.Source.Trim(ctx, floor+1); err != nil {
		return floor, fmt.Errorf("trim source below %d: %w", floor+1, err)
	}
	return floor, nil
}

// logFloor returns the lowest SourceSeq of every partition's last commit
// marker; ok is false if a partition has none, or one of another source
// epoch than epoch.
func (m *TableManager) logFloor(ctx context.Context, epoch string) (floor uint64, ok bool, err error) {
	for p := 0; p < m.cfg.Partitions; p++ {
		marker, _, found, err := m.cfg.Changelog.LastCommit(ctx, p)
		if err != nil {
			return 0, false, fmt.Errorf("partition %d: %w", p, err)
		}
		if !found || marker.SourceEpoch != "" && epoch != "" && marker.SourceEpoch != epoch {
			return 0, false, nil
		}
		if p == 0 || marker.SourceSeq < floor {
			floor = marker.SourceSeq
		}
	}
	return floor, true, nil
}
