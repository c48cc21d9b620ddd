package manager

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/edgetables/edgetables/store"
)

// Recovery brings the stores of newly assigned partitions up to the end of
// their changelogs before they are processed (Faust's Recovery service).
//
// A partition replays from the offset persisted in its store to the
// changelog's last sequence, read when recovery starts. A store that cannot
// be trusted is destroyed and rebuilt by a full replay, with the reason
// logged: a corrupt or unreadable file, a persisted offset beyond the end of
// the changelog, or a changelog that was recreated (another epoch).
type Recovery struct {
	m *TableManager

	mu       sync.Mutex
	progress map[int]*RecoveryProgress
}

// RecoveryProgress is the state of one partition's recovery.
type RecoveryProgress struct {
	Partition int `json:"partition"`
	// From is the first changelog sequence replayed; HighWater the last
	// (the log's end when recovery started).
	From      uint64 `json:"from"`
	HighWater uint64 `json:"high_water"`
	// Applied is the last sequence applied so far; Records counts the
	// entries applied.
	Applied uint64 `json:"applied"`
	Records int    `json:"records"`
	// Rebuilt is set, with Reason, when the store was discarded and rebuilt.
	Rebuilt bool      `json:"rebuilt"`
	Reason  string    `json:"reason,omitempty"`
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended"` // zero while running
}

// Remaining estimates the sequences left to replay.
func (p RecoveryProgress) Remaining() uint64 {
	if p.Applied >= p.HighWater {
		return 0
	}
	if p.Applied < p.From {
		return p.HighWater - p.From + 1
	}
	return p.HighWater - p.Applied
}

func newRecovery(m *TableManager) *Recovery {
	return &Recovery{m: m, progress: make(map[int]*RecoveryProgress)}
}

// Progress returns the state of the last recovery of every partition, in
// partition order.
func (r *Recovery) Progress() []RecoveryProgress {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]RecoveryProgress, 0, len(r.progress))
	for i := 0; i < r.m.cfg.Partitions; i++ {
		if p := r.progress[i]; p != nil {
			out = append(out, *p)
		}
	}
	return out
}

func (r *Recovery) update(id int, f func(p *RecoveryProgress)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.progress[id]
	if p == nil {
		p = &RecoveryProgress{Partition: id}
		r.progress[id] = p
	}
	f(p)
}

// recover opens and recovers the given partitions, a few at a time, and
// registers each as active when it is done.
func (r *Recovery) recover(ctx context.Context, ids []int) error {
	if len(ids) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopLog := r.logProgress(ctx)
	defer stopLog()

	sem := make(chan struct{}, max(2, runtime.GOMAXPROCS(0)))
	errs := make(chan error, len(ids))
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				errs <- ctx.Err()
				return
			}
			defer func() { <-sem }()
			if err := r.recoverPartition(ctx, id); err != nil {
				errs <- fmt.Errorf("recover partition %d: %w", id, err)
				cancel()
			}
		}()
	}
	wg.Wait()
	close(errs)
	return errors.Join(collect(errs)...)
}

func collect(errs <-chan error) []error {
	var out []error
	for err := range errs {
		out = append(out, err)
	}
	return out
}

func (r *Recovery) recoverPartition(ctx context.Context, id int) error {
	m := r.m
	log := m.log.With("partition", id)
	start := time.Now()
	state, err := m.cfg.Changelog.State(ctx, id)
	if err != nil {
		return fmt.Errorf("changelog state: %w", err)
	}
	st, offs, reason, err := r.openTrusted(id, state)
	if err != nil {
		return err
	}
	p := &partition{m: m, id: id, partitions: m.cfg.Partitions, store: st, epoch: state.Epoch}
	p.setState(StateRecovering)
	p.applied.Store(offs.Changelog)
	p.sourceSeq.Store(offs.Source)
	p.lastPersist = offs.Source
	p.highWater.Store(state.Last)
	p.expectLast = state.Last

	from := max(offs.Changelog+1, state.First)
	r.update(id, func(rp *RecoveryProgress) {
		*rp = RecoveryProgress{Partition: id, From: from, HighWater: state.Last, Applied: offs.Changelog,
			Rebuilt: reason != "", Reason: reason, Started: start}
	})
	m.mu.Lock()
	m.parts[id] = p
	m.mu.Unlock()

	records := 0
	if from <= state.Last {
		log.Info("recovering partition", "from", from, "high_water", state.Last, "persisted_source", offs.Source)
		err = m.cfg.Changelog.Replay(ctx, id, from, state.Last, m.cfg.RecoveryBufferSize, func(es []Entry) error {
			if err := r.apply(p, es); err != nil {
				return err
			}
			records += len(es)
			r.update(id, func(rp *RecoveryProgress) { rp.Applied = p.applied.Load(); rp.Records = records })
			return nil
		})
		if err != nil {
			m.mu.Lock()
			delete(m.parts, id)
			m.mu.Unlock()
			_ = st.Close()
			return fmt.Errorf("replay from %d to %d: %w", from, state.Last, err)
		}
	}
	// The log ends at state.Last: nothing else writes it while we own it.
	p.applied.Store(max(p.applied.Load(), state.Last))
	p.setState(StateActive)
	r.update(id, func(rp *RecoveryProgress) { rp.Applied = p.applied.Load(); rp.Ended = time.Now() })
	log.Info("partition active", "records_replayed", records, "applied", p.applied.Load(),
		"source_seq", p.sourceSeq.Load(), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// openTrusted opens partition id's store, destroying and recreating it when
// its content cannot be trusted against the changelog's state. reason says
// why it was rebuilt ("" when it was kept).
func (r *Recovery) openTrusted(id int, state LogState) (store.Store, store.Offsets, string, error) {
	log := r.m.log.With("partition", id)
	stores := r.m.cfg.Stores
	st, err := stores.Open(id)
	reason := ""
	var offs store.Offsets
	switch {
	case errors.Is(err, store.ErrCorrupt):
		reason = fmt.Sprintf("store unreadable: %v", err)
	case err != nil:
		return nil, offs, "", fmt.Errorf("open store: %w", err)
	default:
		offs, err = st.Offsets()
		switch {
		case err != nil:
			reason = fmt.Sprintf("offsets unreadable: %v", err)
		case offs.Changelog > state.Last:
			reason = fmt.Sprintf("persisted changelog offset %d is beyond the changelog's end %d", offs.Changelog, state.Last)
		case offs.Changelog > 0 && offs.Epoch != state.Epoch:
			reason = fmt.Sprintf("changelog was recreated (epoch %q, store has %q)", state.Epoch, offs.Epoch)
		}
	}
	if reason == "" {
		return st, offs, "", nil
	}
	log.Warn("rebuilding store from the changelog", "reason", reason)
	if st != nil {
		_ = st.Close()
	}
	if err := stores.Destroy(id); err != nil {
		return nil, offs, "", fmt.Errorf("destroy untrusted store: %w", err)
	}
	st, err = stores.Open(id)
	if err != nil {
		return nil, offs, "", fmt.Errorf("open rebuilt store: %w", err)
	}
	return st, store.Offsets{}, reason, nil
}

// apply writes one batch of replayed entries to p's store with the offsets
// they bring it to, in one transaction.
func (r *Recovery) apply(p *partition, es []Entry) error {
	if len(es) == 0 {
		return nil
	}
	muts := make([]store.Mutation, 0, len(es))
	source := p.sourceSeq.Load()
	for _, e := range es {
		if e.Commit != nil {
			source = max(source, e.Commit.SourceSeq)
			continue
		}
		if _, ok := r.m.tables[e.Record.Table]; !ok {
			r.m.counters.unknownRecords.Add(1)
			continue
		}
		muts = append(muts, store.Mutation{Table: e.Record.Table, Key: e.Record.Key, Value: e.Record.Value, Delete: e.Record.Delete})
	}
	last := es[len(es)-1].Seq
	err := p.store.Apply(store.Batch{Mutations: muts, Offsets: store.Offsets{Changelog: last, Source: source, Epoch: p.epoch}})
	if err != nil {
		return fmt.Errorf("apply changelog %d..%d: %w", es[0].Seq, last, err)
	}
	p.applied.Store(last)
	p.sourceSeq.Store(source)
	p.lastPersist = source
	return nil
}

// logProgress logs the recovery's progress every 5 s until stopped.
func (r *Recovery) logProgress(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				for _, p := range r.Progress() {
					if !p.Ended.IsZero() {
						continue
					}
					el := time.Since(p.Started).Seconds()
					rate := float64(p.Records) / max(el, 0.001)
					eta := "unknown"
					if rate > 0 {
						eta = time.Duration(float64(p.Remaining()) / rate * float64(time.Second)).Round(time.Second).String()
					}
					r.m.log.Info("still recovering", "partition", p.Partition, "remaining", p.Remaining(),
						"rate_per_s", int(rate), "eta", eta)
				}
			}
		}
	}()
	return func() { cancel(); <-done }
}
