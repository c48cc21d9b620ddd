package manager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/edgetables/edgetables/manager/port"
	"github.com/edgetables/edgetables/manager/status"
	"github.com/edgetables/edgetables/store"
)

// recovery brings the stores of newly assigned partitions up to the end of
// their changelogs before they are processed (Faust's Recovery service).
//
// A partition replays from the offset persisted in its store to the
// changelog's last sequence, read when recovery starts. A store that cannot
// be trusted is destroyed and rebuilt by a full replay, with the reason
// logged: a corrupt or unreadable file, a persisted offset beyond the end of
// the changelog, or a changelog that was recreated (another epoch).
type recovery struct {
	m *TableManager

	mu       sync.Mutex
	progress map[int]*status.RecoveryProgress

	// logEvery and stallAfter override the progress log's timing (tests).
	logEvery, stallAfter time.Duration
}

func newRecovery(m *TableManager) *recovery {
	return &recovery{m: m, progress: make(map[int]*status.RecoveryProgress)}
}

// snapshot returns the state of the last recovery of every partition, in
// partition order, with its rates computed.
func (r *recovery) snapshot() []status.RecoveryProgress {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]status.RecoveryProgress, 0, len(r.progress))
	now := time.Now()
	for i := 0; i < r.m.cfg.Partitions; i++ {
		if p := r.progress[i]; p != nil {
			out = append(out, withRates(*p, now))
		}
	}
	return out
}

// withRates fills p's computed fields as of now.
func withRates(p status.RecoveryProgress, now time.Time) status.RecoveryProgress {
	p.RecordsRemaining = p.Remaining()
	if !p.Ended.IsZero() {
		now = p.Ended
	}
	if el := now.Sub(p.Started).Seconds(); el > 0 && !p.Started.IsZero() {
		p.RatePerSecond = float64(p.Records) / el
	}
	p.ETASeconds = 0
	if p.RatePerSecond > 0 && p.Ended.IsZero() {
		p.ETASeconds = float64(p.RecordsRemaining) / p.RatePerSecond
	}
	return p
}

// forget drops the progress of a partition this node no longer holds.
func (r *recovery) forget(id int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.progress, id)
}

func (r *recovery) update(id int, f func(p *status.RecoveryProgress)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.progress[id]
	if p == nil {
		p = &status.RecoveryProgress{Partition: id}
		r.progress[id] = p
	}
	f(p)
}

// recoverActive brings partition p to the end of its changelog and takes
// the log over: it appends a commit marker expecting the log's end, which
// fences any earlier writer (a previous owner that was paused, say). If
// another writer appended meanwhile, the new tail is replayed and the
// takeover tried again. p may be new (no store) or a standby (a warm store).
// It runs in p's task goroutine; the processor activates p afterwards.
//
// A writer that appended a commit marker of a newer generation than gen
// owns the log by a newer assignment: recoverActive then returns errStale
// instead of fencing it, and p waits for that assignment. Markers are
// checked in the tail that grew during the takeover, and, when retake is
// set (p was fenced while this node still owned it), in the whole tail.
func (r *recovery) recoverActive(ctx context.Context, p *partition, gen uint64, retake bool) (err error) {
	m := r.m
	log := m.log.With("partition", p.id)
	rs := r.newRestore(p, RecoveryActive)
	defer func() { rs.finish(ctx, err) }()
	r.setPhase(p.id, status.PhaseOpening)
	first := true
	for attempt := 0; ; attempt++ {
		check := retake || attempt > 0
		var newer *port.CommitMarker
		state, err := m.cfg.Changelog.State(ctx, p.id)
		if err != nil {
			return fmt.Errorf("changelog state: %w", err)
		}
		reason := ""
		if p.store == nil || !r.trusted(p, state) {
			if reason, err = r.open(ctx, p, state, true); err != nil {
				if be := (*behindError)(nil); errors.As(err, &be) && be.reseed && attempt < 100 {
					if err := r.reseed(ctx, p, state, gen); err != nil {
						return err
					}
					continue // the store is the log's again: read its end and take it over
				}
				return err
			}
		}
		from := max(p.applied.Load()+1, state.First)
		if first {
			first = false
			rs.begin(from, state.Last, reason)
		} else {
			r.update(p.id, func(rp *status.RecoveryProgress) {
				rp.Phase, rp.LastProgress = status.PhaseReplaying, time.Now()
				if reason != "" {
					rp.Rebuilt, rp.Reason = true, reason
				}
			})
		}
		p.highWater.Store(state.Last)
		if from <= state.Last {
			log.Info("recovering partition", "from", from, "high_water", state.Last, "source_seq", p.sourceSeq.Load())
			if p.applied.Load() == 0 {
				// An empty store, filled from the whole log: unsynced
				// until it is (the store marks it, so that a crash
				// meanwhile has it rebuilt).
				if err := startRebuild(p.store); err != nil {
					return err
				}
			}
			a := r.startApplier(ctx, p, rs.batch)
			err = m.cfg.Changelog.Replay(ctx, p.id, from, state.Last, replayBatch(m.cfg.RecoveryBufferSize), func(es []port.Entry) error {
				if check && newer == nil {
					newer = newerMarker(es, gen)
				}
				return a.add(ctx, es)
			})
			if aerr := a.wait(); err == nil {
				err = aerr
			}
			if err != nil {
				return fmt.Errorf("replay from %d to %d: %w", from, state.Last, err)
			}
			if err := r.reachedEnd(ctx, p, "replay", from, state.Last); err != nil {
				return err
			}
		}
		if newer != nil {
			if err := endRebuild(p.store); err != nil {
				return err
			}
			return &staleError{node: newer.Node, gen: newer.Generation, mine: gen}
		}
		r.setPhase(p.id, status.PhaseTakingOver)
		m.resolveRecovered(ctx, p)
		marker := port.CommitMarker{SourceSeq: p.sourceSeq.Load(), Node: m.cfg.Node, Generation: gen, SourceEpoch: p.sourceEpoch}
		actx, cancel := context.WithTimeout(ctx, commitTimeout)
		last, err := m.cfg.Changelog.Append(actx, p.id, state.Last, nil, marker)
		cancel()
		if errors.Is(err, port.ErrFenced) && attempt < 100 {
			log.Info("changelog grew during takeover; replaying the new tail", "expected_last", state.Last)
			continue
		}
		if err != nil {
			return fmt.Errorf("take over changelog at %d: %w", state.Last, err)
		}
		offs := store.Offsets{Changelog: last, Source: p.sourceSeq.Load(), Epoch: p.epoch, SourceEpoch: p.sourceEpoch}
		if err := p.store.Apply(store.Batch{Offsets: offs}); err != nil {
			return fmt.Errorf("persist offsets after takeover: %w", err)
		}
		// A rebuilt store is synced once, with the takeover's offsets: a
		// crash before leaves it marked, and it is rebuilt again.
		if err := endRebuild(p.store); err != nil {
			return err
		}
		p.applied.Store(last)
		p.highWater.Store(last)
		p.expectLast = last
		p.logSource = marker.SourceSeq
		p.lastPersist, p.persistedAt = offs.Source, time.Now()
		rs.end()
		log.Info("partition recovered", "records_replayed", rs.records, "applied", last,
			"source_seq", p.sourceSeq.Load(), "generation", gen, "took", time.Since(rs.start).Round(time.Millisecond))
		return nil
	}
}

// reachedEnd checks that a replay of p's log from from applied it up to
// last, its end when the replay began. A replay that stopped short, as the
// log's leader tells:
//   - read a lagging replica, if a message up to last is stored: taking
//     over would drop the records it missed (an error; the recovery is
//     retried);
//   - found the messages up to last superseded, if the first one stored
//     is after last: a writer appended since (the new owner's commit
//     marker compacts the old one away), and what it wrote is read next
//     (a standby follows from last+1; a takeover, expecting the log to
//     end at last, is fenced and replays the new tail);
//   - found them removed by hand (nats stream rmm), if none is stored at
//     all: the log's last message is never compacted away. They are gone
//     for good; the partition goes on from what is left, and says so.
func (r *recovery) reachedEnd(ctx context.Context, p *partition, what string, from, last uint64) error {
	got := p.applied.Load()
	if got >= last {
		return nil
	}
	left, err := r.m.cfg.Changelog.FirstStored(ctx, p.id, got+1)
	if err != nil {
		return fmt.Errorf("%s from %d stopped at %d, before the log's end %d: %w", what, from, got, last, err)
	}
	if left != 0 && left <= last {
		return fmt.Errorf("%s from %d stopped at %d, before the log's end %d (sequence %d is stored)", what, from, got, last, left)
	}
	if left > last {
		r.m.log.Debug("replay's end superseded by a newer write; reading on from it",
			"partition", p.id, "what", what, "applied", got, "log_last", last, "next_stored", left)
		return nil
	}
	r.m.log.Warn("the changelog's last messages were removed, not by edgetables (which never removes a log's last message): their records are lost; the partition goes on from what is left",
		"partition", p.id, "applied", got, "log_last", last, "removed_from", got+1)
	return nil
}

// errStale: a newer owner writes the partition's changelog; this node's
// assignment is out of date.
var errStale = errors.New("a newer owner writes the changelog")

// staleError is errStale with the marker that showed it.
type staleError struct {
	node      string
	gen, mine uint64
}

func (e *staleError) Error() string {
	return fmt.Sprintf("%v: %s wrote a commit marker of generation %d, the recovery ran for generation %d", errStale, e.node, e.gen, e.mine)
}

func (e *staleError) Unwrap() error { return errStale }

// newerMarker returns the first commit marker in es of a generation above
// gen, or nil.
func newerMarker(es []port.Entry, gen uint64) *port.CommitMarker {
	for _, e := range es {
		if e.Commit != nil && e.Commit.Generation > gen {
			return e.Commit
		}
	}
	return nil
}

// follow keeps standby partition p up to date with its changelog until ctx
// ends: a catch-up replay to the log's end, then following it as it grows.
// caughtUp is called once the catch-up is done.
func (r *recovery) follow(ctx context.Context, p *partition, caughtUp func()) (err error) {
	m := r.m
	rs := r.newRestore(p, RecoveryStandby)
	defer func() { rs.finish(ctx, err) }()
	r.setPhase(p.id, status.PhaseOpening)
	state, err := m.cfg.Changelog.State(ctx, p.id)
	if err != nil {
		return fmt.Errorf("changelog state: %w", err)
	}
	reason := ""
	if p.store == nil || !r.trusted(p, state) {
		if reason, err = r.open(ctx, p, state, false); err != nil {
			return err
		}
	}
	from := max(p.applied.Load()+1, state.First)
	rs.begin(from, state.Last, reason)
	if from <= state.Last {
		err := m.cfg.Changelog.Replay(ctx, p.id, from, state.Last, m.cfg.StandbyBufferSize, func(es []port.Entry) error {
			if err := r.apply(p, es); err != nil {
				return err
			}
			rs.batch(len(es))
			return nil
		})
		if err != nil {
			return fmt.Errorf("standby catch-up from %d to %d: %w", from, state.Last, err)
		}
		if err := r.reachedEnd(ctx, p, "standby catch-up", from, state.Last); err != nil {
			return err
		}
	}
	if err := endRebuild(p.store); err != nil { // the store of an interrupted active recovery
		return err
	}
	p.highWater.Store(state.Last)
	rs.end()
	caughtUp()
	from = max(p.applied.Load()+1, state.Last+1)
	return m.cfg.Changelog.Follow(ctx, p.id, from, m.cfg.StandbyBufferSize, func(es []port.Entry) error {
		if err := r.apply(p, es); err != nil {
			return err
		}
		p.highWater.Store(max(p.highWater.Load(), es[len(es)-1].Seq))
		rs.batch(len(es))
		return nil
	})
}

// trusted reports whether p's open store agrees with the log's state.
func (r *recovery) trusted(p *partition, state port.LogState) bool {
	a := p.applied.Load()
	return a <= state.Last && (a == 0 || (p.epoch == state.Epoch && a+1 >= state.First)) && !missedTombstones(state, a)
}

// open opens p's store (closing one already open), rebuilding it when it
// cannot be trusted, and loads its offsets. reason says why it was rebuilt.
func (r *recovery) open(ctx context.Context, p *partition, state port.LogState, active bool) (reason string, err error) {
	if p.store != nil {
		_ = p.store.Close()
		p.store = nil
	}
	var offs store.Offsets
	p.store, offs, reason, err = openTrusted(r.m.log.With("partition", p.id), r.m.cfg.Stores, p.id, state,
		r.m.storeTables(false), r.behind(ctx, p, active))
	if err != nil {
		return "", err
	}
	p.behind.Store(nil)
	p.epoch = state.Epoch
	p.logSource = 0
	p.applied.Store(offs.Changelog)
	p.sourceSeq.Store(offs.Source)
	p.sourceEpoch = offs.SourceEpoch
	p.lastPersist = offs.Source
	return reason, nil
}

// openTrusted opens store id of stores, destroying and recreating it when
// its content cannot be trusted against its log's state; log names the
// store. reason says why it was rebuilt ("" when it was kept). When the
// store is ahead of its log (its offset beyond the log's end, or another
// epoch: the log was deleted, or restored from an older copy), ahead, if
// set, is asked first: an error from it leaves the store as it is and is
// returned. A store that does not cover every table of tables (the node
// declares a table the store's replays skipped) is rebuilt too; the store
// kept or rebuilt then records that it covers tables (tableset.go).
func openTrusted(log *slog.Logger, stores store.Provider, id int, state port.LogState, tables []string,
	ahead func(st store.Store, offs store.Offsets, why string) error) (store.Store, store.Offsets, string, error) {
	st, err := stores.Open(id)
	reason, behind, newer := "", false, false
	var offs store.Offsets
	switch {
	case errors.Is(err, store.ErrCorrupt):
		reason = fmt.Sprintf("store unreadable: %v", err)
	case err != nil:
		return nil, offs, "", fmt.Errorf("%w: %w", errStoreOpen, err)
	default:
		offs, err = st.Offsets()
		switch {
		case err != nil:
			reason = fmt.Sprintf("offsets unreadable: %v", err)
		case offs.Changelog > state.Last:
			reason = fmt.Sprintf("persisted changelog offset %d is beyond the changelog's end %d", offs.Changelog, state.Last)
			newer = true
		case offs.Changelog > 0 && offs.Epoch != state.Epoch:
			reason = fmt.Sprintf("changelog was recreated (epoch %q, store has %q)", state.Epoch, offs.Epoch)
			newer = true
		case offs.Changelog > 0 && offs.Changelog+1 < state.First:
			// The sequences between were removed: superseded (then the
			// replay from First brings every key up to date) or purged or
			// discarded by a limit (then records and tombstones are gone,
			// and the store would keep keys the log deleted). The replay
			// reads the whole log either way, so a rebuild costs the same.
			reason = fmt.Sprintf("persisted changelog offset %d is behind the changelog's first sequence %d: the log was compacted or trimmed past it, so the whole log is replayed into a new store",
				offs.Changelog, state.First)
			behind = true
		case missedTombstones(state, offs.Changelog):
			reason = fmt.Sprintf("persisted changelog offset %d is older than the tombstone TTL (the log from sequence %d on is younger): a tombstone it did not apply may have expired, so the whole log is replayed into a new store",
				offs.Changelog, state.TombstonesFrom)
			behind = true
		case offs.Changelog > 0:
			covered, ok, err := coveredTables(st)
			switch miss := missingTables(covered, tables); {
			case err != nil:
				reason = fmt.Sprintf("recorded tables unreadable: %v", err)
			case !ok:
				reason = "the store does not record which tables it covers (written by an older edgetables): a table declared since would lack the records its replays skipped"
				behind = true
			case len(miss) > 0:
				reason = fmt.Sprintf("newly declared tables %v: the store's replays skipped their records", miss)
				behind = true
			}
		}
	}
	if reason == "" {
		if err := coverTables(st, offs, tables); err != nil {
			_ = st.Close()
			return nil, offs, "", err
		}
		return st, offs, "", nil
	}
	if newer && ahead != nil {
		if err := ahead(st, offs, reason); err != nil {
			_ = st.Close()
			return nil, offs, "", err
		}
	}
	if behind {
		// Routine after a long absence: compaction moves the first
		// sequence on.
		log.Info("rebuilding store from the changelog", "reason", reason)
	} else {
		log.Warn("rebuilding store from the changelog", "reason", reason)
	}
	if st != nil {
		_ = st.Close()
	}
	if err := stores.Destroy(id); err != nil {
		return nil, offs, "", fmt.Errorf("%w: destroy untrusted store: %w", errStoreOpen, err)
	}
	st, err = stores.Open(id)
	if err != nil {
		return nil, offs, "", fmt.Errorf("%w: rebuilt store: %w", errStoreOpen, err)
	}
	if err := coverTables(st, store.Offsets{}, tables); err != nil {
		_ = st.Close()
		return nil, offs, "", err
	}
	return st, store.Offsets{}, reason, nil
}

// apply writes one batch of replayed entries to p's store with the offsets
// they bring it to, in one transaction.
func (r *recovery) apply(p *partition, es []port.Entry) error {
	if len(es) == 0 {
		return nil
	}
	muts := make([]store.Mutation, 0, len(es))
	source, epoch := p.sourceSeq.Load(), p.sourceEpoch
	for _, e := range es {
		if e.Commit != nil {
			// A marker of another source epoch was written by an owner
			// that found the source created again: its position counts
			// in the new stream and replaces the old one.
			same := e.Commit.SourceEpoch == "" || epoch == "" || e.Commit.SourceEpoch == epoch
			if same && e.Commit.SourceSeq < p.logSource {
				// Every writer appends after replaying the whole log,
				// so markers never go back; one that does was written
				// by a writer that was not fenced.
				r.m.counters.markerRegressions.Add(1)
				r.m.log.Error("changelog commit marker goes back: a stale writer's records are in the log",
					"partition", p.id, "seq", e.Seq, "source_seq", e.Commit.SourceSeq, "earlier_source_seq", p.logSource,
					"node", e.Commit.Node, "generation", e.Commit.Generation)
			}
			p.logSource = e.Commit.SourceSeq
			if same {
				source = max(source, e.Commit.SourceSeq)
			} else {
				source = e.Commit.SourceSeq
			}
			if e.Commit.SourceEpoch != "" {
				epoch = e.Commit.SourceEpoch
			}
			continue
		}
		if _, ok := r.m.tables[e.Record.Table]; !ok {
			r.m.counters.unknownRecords.Add(1)
			continue
		}
		muts = append(muts, store.Mutation{Table: e.Record.Table, Key: e.Record.Key, Value: e.Record.Value, Delete: e.Record.Delete})
	}
	last := es[len(es)-1].Seq
	err := p.store.Apply(store.Batch{Mutations: muts, Offsets: store.Offsets{Changelog: last, Source: source, Epoch: p.epoch, SourceEpoch: epoch}})
	if err != nil {
		return fmt.Errorf("apply changelog %d..%d: %w", es[0].Seq, last, err)
	}
	p.applied.Store(last)
	p.sourceSeq.Store(source)
	p.sourceEpoch = epoch
	p.lastPersist = source
	return nil
}

// logProgress logs the progress of every running recovery every 5 s until
// stopped, and warns about a partition that made no progress for 30 s,
// naming what it does or waits for.
func (r *recovery) logProgress(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	every, stall := logEvery, stallAfter
	if r.logEvery > 0 {
		every, stall = r.logEvery, r.stallAfter
	}
	tables := make([]string, 0, len(r.m.tables))
	for _, t := range r.m.Tables() {
		tables = append(tables, t.Name())
	}
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		warned := map[int]time.Time{} // partition → last stall warning
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				now := time.Now()
				for _, p := range r.snapshot() {
					if !p.Ended.IsZero() {
						continue
					}
					kind := RecoveryActive
					if p.Standby {
						kind = RecoveryStandby
					}
					eta := "unknown"
					if p.ETASeconds > 0 {
						eta = time.Duration(p.ETASeconds * float64(time.Second)).Round(time.Second).String()
					}
					attrs := []any{"partition", p.Partition, "kind", kind, "tables", tables,
						"remaining", p.RecordsRemaining, "rate_per_s", int(p.RatePerSecond), "eta", eta}
					idle := now.Sub(p.LastProgress)
					w, ok := warned[p.Partition]
					if idle >= stall && (!ok || w.Before(p.LastProgress) || now.Sub(w) >= stall) {
						warned[p.Partition] = now
						r.m.log.Warn("recovery stalled: partition made no progress", append(attrs, "for", idle.Round(time.Second),
							"waiting_for", p.Phase, "applied", p.Applied, "high_water", p.HighWater)...)
						continue
					}
					r.m.log.Info("still recovering", append(attrs, "phase", p.Phase)...)
				}
			}
		}
	}()
	return func() { cancel(); <-done }
}
